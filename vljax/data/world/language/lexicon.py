"""Fixed lexicons of the world's languages (WORLD.md 3.8): word tables, morphology, word order.

Every language maps the same semantic keys (``color:red``, ``rel:left_of``, ``num2``, function words
such as ``exist`` or ``q``) to surface words. English words may span several tokens; toy words are one
token each. The toy tables were drawn once from per-language syllable inventories and are frozen here
(never regenerated at run time). NOTE: `xd` uses letters no other language uses, so it shares no word
with them (the "low-resource" language); `xb` maps circle and ring to one homonym (TowerVision).
"""
from __future__ import annotations

import dataclasses

from vljax.data.world import concepts

NUMBER_WORDS_EN = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
                   "eleven", "twelve")
MAX_NUMBER = len(NUMBER_WORDS_EN) - 1

_EN = {
    **{f"num{i}": w for i, w in enumerate(NUMBER_WORDS_EN)},
    **{f"size:{s}": s for s in concepts.SIZES},
    **{f"color:{c}": c for c in concepts.COLORS},
    **{f"texture:{t}": t for t in concepts.TEXTURES},
    **{f"shape:{s}": s for s in concepts.SHAPES},
    **{f"pos:{p}": p for p in concepts.POSITIONS},
    "rel:left_of": "to the left of", "rel:right_of": "to the right of", "rel:above": "above",
    "rel:below": "below", "rel:near": "near", "rel:overlaps": "overlapping", "rel:in_front_of": "in front of",
    "rel:bigger_than": "bigger than", "rel:smaller_than": "smaller than",
    "rel:same_color": "the same color as", "rel:same_shape": "the same shape as",
    "object": "object", "and": "and", "the": "the", "at": "at the", "exist": "there", "see": "i see",
    "is": "is", "appears": "appears", "picture": "a picture", "with": "with", "what": "what",
    "color_q": "color", "shape_q": "shape", "size_q": "size", "texture_q": "texture", "where": "where",
    "how_many": "how many", "q": "", "more": "more", "than": "than", "yes": "yes", "no": "no",
    "photo": "photo", "of": "of", "image": "image", "drawing": "drawing", "rendering": "rendering",
    "bright": "bright", "dark": "dark", "blurry": "blurry", "cropped": "cropped", "clean": "clean",
    "point": "point", "cloud": "cloud", "depth": "depth", "also": "also", "here": "here", "found": "found",
    "visible": "visible",
}
_EN_PLURAL = {"cross": "crosses", "object": "objects"}

# NOTE: frozen output of a one-off syllable sampler; edit only by appending keys (ids are data).
_TOY = {
    "xa": {
        "num0": "di", "num1": "to", "num2": "si", "num3": "de", "num4": "mi", "num5": "fa", "num6": "me",
        "num7": "fo", "num8": "bu", "num9": "tu", "num10": "pe", "num11": "sa", "num12": "pu", "size:tiny": "coce",
        "size:small": "leto", "size:medium": "togu", "size:large": "musa", "color:red": "rosi",
        "color:blue": "gate", "color:green": "vere", "color:yellow": "cubo", "color:purple": "cade",
        "color:orange": "puta", "color:cyan": "sade", "color:pink": "miru", "color:white": "nadi",
        "color:brown": "nira", "texture:solid": "deba", "texture:striped": "ripu", "texture:dotted": "tomu",
        "texture:checkered": "gide", "texture:ringed": "sovo", "texture:noisy": "cugu", "texture:outlined": "vige",
        "shape:circle": "gedu", "shape:square": "bala", "shape:triangle": "feno", "shape:star": "micu",
        "shape:diamond": "camu", "shape:cross": "gefi", "shape:hexagon": "tere", "shape:heart": "gobi",
        "shape:ellipse": "lara", "shape:rectangle": "rano", "shape:pentagon": "puli", "shape:ring": "nife",
        "shape:sun": "govu", "pos:top left": "duma", "pos:top": "lugo", "pos:top right": "todi", "pos:left": "lopi",
        "pos:center": "dolo", "pos:right": "pagu", "pos:bottom left": "voce", "pos:bottom": "ribe",
        "pos:bottom right": "citi", "rel:left_of": "rabi", "rel:right_of": "bene", "rel:above": "curu",
        "rel:below": "mena", "rel:near": "bole", "rel:overlaps": "rufa", "rel:in_front_of": "bifi",
        "rel:bigger_than": "nami", "rel:smaller_than": "sedo", "rel:same_color": "ligo", "rel:same_shape": "sasu",
        "object": "tafe", "and": "bi", "the": "li", "at": "ba", "exist": "gida", "see": "neto", "is": "vo",
        "appears": "lata", "picture": "cila", "with": "soli", "what": "gipo", "color_q": "covo", "shape_q": "cimi",
        "size_q": "nosi", "where": "gasu", "how_many": "suve", "q": "vi", "more": "cofe", "than": "begu",
        "yes": "doba", "no": "risi", "photo": "tilu", "of": "pa", "image": "ruta", "drawing": "goce",
        "rendering": "nico", "bright": "cuso", "dark": "pene", "blurry": "pemu", "cropped": "gino", "clean": "pera",
        "point": "rega", "cloud": "musi", "depth": "tori", "also": "gemu", "here": "siso", "found": "noca",
        "visible": "cevo",
    },
    "xb": {
        "num0": "ge", "num1": "ya", "num2": "wo", "num3": "ka", "num4": "ri", "num5": "re", "num6": "ha",
        "num7": "ta", "num8": "ga", "num9": "yo", "num10": "ni", "num11": "ku", "num12": "gi", "size:tiny": "mimo",
        "size:small": "nati", "size:medium": "tiwo", "size:large": "gera", "color:red": "tohi",
        "color:blue": "hisa", "color:green": "kiwo", "color:yellow": "rini", "color:purple": "nika",
        "color:orange": "tima", "color:cyan": "tahi", "color:pink": "guwe", "color:white": "kigo",
        "color:brown": "nigu", "texture:solid": "huyo", "texture:striped": "yige", "texture:dotted": "nenu",
        "texture:checkered": "mera", "texture:ringed": "suta", "texture:noisy": "rawe", "texture:outlined": "wesu",
        "shape:circle": "sose", "shape:square": "gasa", "shape:triangle": "hiru", "shape:star": "kiyu",
        "shape:diamond": "muso", "shape:cross": "yero", "shape:hexagon": "sisu", "shape:heart": "yome",
        "shape:ellipse": "nayu", "shape:rectangle": "mani", "shape:pentagon": "yewi", "shape:ring": "reri",
        "shape:sun": "setu", "pos:top left": "huwo", "pos:top": "teku", "pos:top right": "kuho", "pos:left": "taye",
        "pos:center": "sewe", "pos:right": "kani", "pos:bottom left": "tesa", "pos:bottom": "tiku",
        "pos:bottom right": "kira", "rel:left_of": "rinu", "rel:right_of": "yasa", "rel:above": "make",
        "rel:below": "riti", "rel:near": "niga", "rel:overlaps": "tagi", "rel:in_front_of": "wuhi",
        "rel:bigger_than": "yaye", "rel:smaller_than": "yuto", "rel:same_color": "yesa", "rel:same_shape": "nimu",
        "object": "niso", "and": "hu", "the": "nu", "at": "ne", "exist": "mene", "see": "hugo", "is": "ye",
        "appears": "neri", "picture": "rowa", "with": "yegu", "what": "yose", "color_q": "yima", "shape_q": "gaha",
        "size_q": "gona", "where": "kure", "how_many": "sete", "q": "su", "more": "teki", "than": "sase",
        "yes": "niro", "no": "sira", "photo": "guyo", "of": "he", "image": "yamu", "drawing": "hawe",
        "rendering": "yege", "bright": "yawu", "dark": "keke", "blurry": "gaga", "cropped": "gagi", "clean": "sise",
        "point": "riga", "cloud": "netu", "depth": "tani", "also": "riho", "here": "wane", "found": "reho",
        "visible": "hamo",
    },
    "xc": {
        "num0": "se", "num1": "ti", "num2": "ma", "num3": "so", "num4": "ze", "num5": "no", "num6": "te",
        "num7": "po", "num8": "ra", "num9": "lo", "num10": "do", "num11": "na", "num12": "le", "size:tiny": "lima",
        "size:small": "pezi", "size:medium": "zebe", "size:large": "nipe", "color:red": "popi",
        "color:blue": "rere", "color:green": "basi", "color:yellow": "dema", "color:purple": "babi",
        "color:orange": "zese", "color:cyan": "zila", "color:pink": "zala", "color:white": "male",
        "color:brown": "ribo", "texture:solid": "rosa", "texture:striped": "dodo", "texture:dotted": "dise",
        "texture:checkered": "rimo", "texture:ringed": "rebe", "texture:noisy": "telo", "texture:outlined": "sisi",
        "shape:circle": "boti", "shape:square": "tobo", "shape:triangle": "pipi", "shape:star": "zare",
        "shape:diamond": "raze", "shape:cross": "pomi", "shape:hexagon": "mipi", "shape:heart": "dapo",
        "shape:ellipse": "rene", "shape:rectangle": "masa", "shape:pentagon": "mizo", "shape:ring": "meza",
        "shape:sun": "tora", "pos:top left": "zipe", "pos:top": "tita", "pos:top right": "nana", "pos:left": "mopa",
        "pos:center": "lopa", "pos:right": "nane", "pos:bottom left": "sole", "pos:bottom": "reta",
        "pos:bottom right": "peme", "rel:left_of": "repi", "rel:right_of": "piso", "rel:above": "tazo",
        "rel:below": "lomi", "rel:near": "lale", "rel:overlaps": "name", "rel:in_front_of": "zepa",
        "rel:bigger_than": "nolo", "rel:smaller_than": "seli", "rel:same_color": "mapo", "rel:same_shape": "poza",
        "object": "bite", "and": "la", "the": "ro", "at": "za", "exist": "zato", "see": "sari", "is": "mo",
        "appears": "seso", "picture": "tido", "with": "pela", "what": "lari", "color_q": "damo", "shape_q": "zosa",
        "size_q": "bezo", "where": "padi", "how_many": "diti", "q": "pi", "more": "sopi", "than": "beba",
        "yes": "rome", "no": "roni", "photo": "bezi", "of": "zo", "image": "lido", "drawing": "biro",
        "rendering": "misi", "bright": "neli", "dark": "rose", "blurry": "bazo", "cropped": "teno", "clean": "sesi",
        "point": "poze", "cloud": "nisi", "depth": "resi", "also": "mase", "here": "zeze", "found": "saze",
        "visible": "nili",
    },
    "xd": {
        "num0": "xywy", "num1": "xyzu", "num2": "vuju", "num3": "xywu", "num4": "juxu", "num5": "zyjy",
        "num6": "wuxu", "num7": "zyqy", "num8": "wuzu", "num9": "juwy", "num10": "juvu", "num11": "xyju",
        "num12": "quqy", "size:tiny": "zuxyvy", "size:small": "vujyxu", "size:medium": "qujyqu",
        "size:large": "zyquwu", "color:red": "xyjyxy", "color:blue": "vuvyzu", "color:green": "wyzyvu",
        "color:yellow": "zuqujy", "color:purple": "wyxuxu", "color:orange": "vyquzy", "color:cyan": "zuwyjy",
        "color:pink": "vujuzu", "color:white": "qyqyju", "color:brown": "zuvyjy", "texture:solid": "xyvyzy",
        "texture:striped": "wuwyvy", "texture:dotted": "zyxywy", "texture:checkered": "xuvuzy",
        "texture:ringed": "vyvuqy", "texture:noisy": "vuvuwu", "texture:outlined": "qyquzu",
        "shape:circle": "wuwuvu", "shape:square": "wuqyqy", "shape:triangle": "qyjyvu", "shape:star": "xuxyvu",
        "shape:diamond": "vuxywy", "shape:cross": "zuzuvy", "shape:hexagon": "quwuxy", "shape:heart": "quxujy",
        "shape:ellipse": "wyxyzy", "shape:rectangle": "xywyju", "shape:pentagon": "wuzyjy", "shape:ring": "wyjyxy",
        "shape:sun": "qyjyxy", "pos:top left": "xywyxu", "pos:top": "vyvujy", "pos:top right": "vyvyqu",
        "pos:left": "xuxuvy", "pos:center": "zyvyjy", "pos:right": "vyzyxy", "pos:bottom left": "xywyvu",
        "pos:bottom": "zuzuwu", "pos:bottom right": "vywujy", "rel:left_of": "juzyqu", "rel:right_of": "jyzyzu",
        "rel:above": "wyzuzu", "rel:below": "quwywy", "rel:near": "jywuzu", "rel:overlaps": "xuzyqy",
        "rel:in_front_of": "zyjuxu", "rel:bigger_than": "zyxujy", "rel:smaller_than": "wujywy",
        "rel:same_color": "qyjuwy", "rel:same_shape": "xywyzy", "object": "juwyzu", "and": "qyzu", "the": "wuqy",
        "at": "wuqu", "exist": "jyxuzu", "see": "jyqyvu", "is": "wuvu", "appears": "vuzuwy", "picture": "xuvyxy",
        "with": "xuvuju", "what": "vywyxu", "color_q": "vyxyxy", "shape_q": "vywuzy", "size_q": "jujyvy",
        "where": "xujujy", "how_many": "xywyqu", "q": "juwu", "more": "jyqyvy", "than": "wujyxy", "yes": "zuwuxu",
        "no": "zyjyzu", "photo": "vyvyvy", "of": "vuxy", "image": "qyzuvy", "drawing": "wuquwu",
        "rendering": "qywyvy", "bright": "quxuvu", "dark": "vyzuzu", "blurry": "quvyvu", "cropped": "vuzyqy",
        "clean": "jyvuxy", "point": "vyxuzy", "cloud": "qyvyvu", "depth": "qyjuwu", "also": "vuvuvy",
        "here": "xyqujy", "found": "wuzyqy", "visible": "zyqyxu",
    },
    "xe": {
        "num0": "taka", "num1": "late", "num2": "movu", "num3": "memu", "num4": "note", "num5": "nani",
        "num6": "kemu", "num7": "popo", "num8": "kumo", "num9": "povi", "num10": "vepa", "num11": "vato",
        "num12": "noti", "size:tiny": "mevu", "size:small": "lanu", "size:medium": "kuto", "size:large": "nepi",
        "color:red": "vamu", "color:blue": "nola", "color:green": "kike", "color:yellow": "piti",
        "color:purple": "liko", "color:orange": "miki", "color:cyan": "toko", "color:pink": "lene",
        "color:white": "lutu", "color:brown": "nelu", "texture:solid": "veli", "texture:striped": "nivo",
        "texture:dotted": "vuvo", "texture:checkered": "tali", "texture:ringed": "leni", "texture:noisy": "kive",
        "texture:outlined": "kinu", "shape:circle": "nuku", "shape:square": "leme", "shape:triangle": "keti",
        "shape:star": "mupi", "shape:diamond": "paki", "shape:cross": "mile", "shape:hexagon": "leva",
        "shape:heart": "pupu", "shape:ellipse": "taku", "shape:rectangle": "paku", "shape:pentagon": "nilu",
        "shape:ring": "pili", "shape:sun": "mapu", "pos:top left": "veku", "pos:top": "pala",
        "pos:top right": "vila", "pos:left": "niti", "pos:center": "tove", "pos:right": "vota",
        "pos:bottom left": "nuti", "pos:bottom": "tipe", "pos:bottom right": "nipa", "rel:left_of": "mona",
        "rel:right_of": "telu", "rel:above": "nevo", "rel:below": "lepo", "rel:near": "velo",
        "rel:overlaps": "mita", "rel:in_front_of": "vumi", "rel:bigger_than": "pole", "rel:smaller_than": "kili",
        "rel:same_color": "kima", "rel:same_shape": "pama", "object": "tune", "and": "vamo", "the": "lonu",
        "at": "lipe", "exist": "lome", "see": "kini", "is": "kapo", "appears": "vita", "picture": "pivi",
        "with": "lule", "what": "mite", "color_q": "pilu", "shape_q": "kepu", "size_q": "puko", "where": "nupi",
        "how_many": "liva", "q": "meve", "more": "muke", "than": "mume", "yes": "pino", "no": "piva",
        "photo": "pema", "of": "navo", "image": "putu", "drawing": "kene", "rendering": "tane", "bright": "milo",
        "dark": "vake", "blurry": "pipo", "cropped": "lupu", "clean": "niko", "point": "nike", "cloud": "naku",
        "depth": "nutu", "also": "tovu", "here": "pavi", "found": "nete", "visible": "nino",
    },
}
# NOTE: TowerVision's ambiguous word: one xb noun covers circle and ring.
_TOY["xb"]["shape:ring"] = _TOY["xb"]["shape:circle"]
# NOTE: texture_q was added after the sampler ran; these words are unused elsewhere in their language.
_TOY["xa"]["texture_q"] = "fesu"
_TOY["xb"]["texture_q"] = "kisa"
_TOY["xc"]["texture_q"] = "mele"
_TOY["xd"]["texture_q"] = "zujuvy"
_TOY["xe"]["texture_q"] = "kovi"

# Frame templates: space-separated tokens; "{NP}"/"{NP2}" noun phrases, "{NPS}" a conjoined NP list,
# "{NPP}"/"{NPP2}" bare plurals, "{PRED}" a predicate, "{ATTRQ}" the asked attribute's word, "{be}" English
# agreement, "{key}" a lexicon word; other tokens are literal. "." and "?" attach to the previous word.
_EN_FRAMES = {
    "LIST": ("{NPS}", "an image with {NPS}", "a picture of {NPS}"),
    "EXIST": ("there {be} {NP} .", "i see {NP} .", "{NP} {be} visible ."),
    "REL": ("{NP} is {PRED} {NP2} .", "{NP} appears {PRED} {NP2} ."),
    "ASK": ("what {ATTRQ} is {NP} ?", "which {ATTRQ} is {NP} ?", "tell me the {ATTRQ} of {NP} ."),
    "WHERE": ("where is {NP} ?", "where can you see {NP} ?"),
    "COUNT": ("how many {NPP} are there ?", "how many {NPP} can you see ?", "count the {NPP} ."),
    "EXISTQ": ("is there {NP} ?", "do you see {NP} ?", "is there {NP} in the image ?"),
    "RELQ": ("is {NP} {PRED} {NP2} ?", "does {NP} appear {PRED} {NP2} ?"),
    "COMPARE": ("are there more {NPP} than {NPP2} ?", "do you see more {NPP} than {NPP2} ?"),
    "GENERIC": ("a picture", "an image"),
}
_TOY_FRAMES = {
    "xa": {  # SVO, noun before adjectives, plural suffix, prepositions
        "LIST": ("{NPS}", "{image} {with} {NPS}"),
        "EXIST": ("{exist} {NP} .", "{see} {NP} ."),
        "REL": ("{NP} {is} {PRED} {NP2} .", "{NP} {appears} {PRED} {NP2} ."),
        "ASK": ("{what} {ATTRQ} {is} {NP} ?", "{ATTRQ} {of} {NP} ?"),
        "WHERE": ("{where} {is} {NP} ?", "{where} {see} {NP} ?"),
        "COUNT": ("{how_many} {NPP} ?", "{how_many} {NPP} {exist} ?"),
        "EXISTQ": ("{exist} {NP} ?", "{see} {NP} ?"),
        "RELQ": ("{is} {NP} {PRED} {NP2} ?", "{NP} {PRED} {NP2} {q} ?"),
        "COMPARE": ("{more} {NPP} {than} {NPP2} ?", "{exist} {more} {NPP} {than} {NPP2} ?"),
        "GENERIC": ("{picture}", "{image}"),
    },
    "xb": {  # SOV, postpositions (locative phrase before the noun phrase), final question particle
        "LIST": ("{NPS}", "{NPS} {with} {image}"),
        "EXIST": ("{NP} {exist} .", "{NP} {see} ."),
        "REL": ("{NP} {with} {NP2} {PRED} {is} .", "{NP} {with} {NP2} {PRED} {appears} ."),
        "ASK": ("{NP} {ATTRQ} {what} {q} ?", "{NP} {ATTRQ} {is} {q} ?"),
        "WHERE": ("{NP} {where} {is} {q} ?", "{NP} {where} {q} ?"),
        "COUNT": ("{NPP} {how_many} {exist} {q} ?", "{NPP} {how_many} {q} ?"),
        "EXISTQ": ("{NP} {exist} {q} ?", "{NP} {see} {q} ?"),
        "RELQ": ("{NP} {with} {NP2} {PRED} {is} {q} ?", "{NP} {with} {NP2} {PRED} {q} ?"),
        "COMPARE": ("{NPP} {NPP2} {than} {more} {q} ?", "{NPP} {NPP2} {than} {more} {exist} {q} ?"),
        "GENERIC": ("{picture}", "{image}"),
    },
    "xc": {  # VSO, numerals after the noun, reduplicated plurals
        "LIST": ("{NPS}", "{image} {with} {NPS}"),
        "EXIST": ("{exist} {NP} .", "{see} {NP} ."),
        "REL": ("{is} {NP} {PRED} {NP2} .", "{appears} {NP} {PRED} {NP2} ."),
        "ASK": ("{what} {ATTRQ} {is} {NP} ?", "{is} {ATTRQ} {NP} {what} ?"),
        "WHERE": ("{where} {is} {NP} ?", "{is} {NP} {where} ?"),
        "COUNT": ("{how_many} {NPP} ?", "{exist} {NPP} {how_many} ?"),
        "EXISTQ": ("{exist} {NP} ?", "{see} {NP} {q} ?"),
        "RELQ": ("{is} {NP} {PRED} {NP2} {q} ?", "{appears} {NP} {PRED} {NP2} {q} ?"),
        "COMPARE": ("{exist} {more} {NPP} {than} {NPP2} ?", "{more} {NPP} {than} {NPP2} {q} ?"),
        "GENERIC": ("{picture}", "{image}"),
    },
    "xd": {  # SOV, noun before adjectives, numeral last, postpositions after the noun phrase
        "LIST": ("{NPS}", "{NPS} {here}"),
        "EXIST": ("{NP} {exist} .", "{NP} {found} ."),
        "REL": ("{NP} {with} {NP2} {PRED} {is} .", "{NP} {with} {NP2} {PRED} {appears} ."),
        "ASK": ("{NP} {ATTRQ} {what} {q} ?", "{NP} {ATTRQ} {is} {q} ?"),
        "WHERE": ("{NP} {where} {is} {q} ?", "{NP} {where} {q} ?"),
        "COUNT": ("{NPP} {how_many} {exist} {q} ?", "{NPP} {how_many} {q} ?"),
        "EXISTQ": ("{NP} {exist} {q} ?", "{NP} {found} {q} ?"),
        "RELQ": ("{NP} {with} {NP2} {PRED} {is} {q} ?", "{NP} {with} {NP2} {PRED} {q} ?"),
        "COMPARE": ("{NPP} {NPP2} {than} {more} {q} ?", "{NPP} {NPP2} {than} {more} {found} {q} ?"),
        "GENERIC": ("{picture}", "{image}"),
    },
    "xe": {  # agglutinative: attributes, plural and locative are suffixes stacked on the noun
        "LIST": ("{NPS}", "{image} {NPS}"),
        "EXIST": ("{NP} {exist} .", "{NP} {visible} ."),
        "REL": ("{NP} {NP2} {PRED} {is} .", "{NP} {NP2} {PRED} {appears} ."),
        "ASK": ("{NP} {ATTRQ} {what} ?", "{what} {ATTRQ} {NP} {q} ?"),
        "WHERE": ("{NP} {where} ?", "{where} {NP} {q} ?"),
        "COUNT": ("{NPP} {how_many} ?", "{how_many} {NPP} {q} ?"),
        "EXISTQ": ("{NP} {exist} {q} ?", "{NP} {visible} {q} ?"),
        "RELQ": ("{NP} {NP2} {PRED} {q} ?", "{NP} {NP2} {PRED} {is} {q} ?"),
        "COMPARE": ("{NPP} {NPP2} {than} {more} ?", "{more} {NPP} {than} {NPP2} {q} ?"),
        "GENERIC": ("{picture}", "{image}"),
    },
}
FRAMES = tuple(_EN_FRAMES)
# English words that only appear in template literals map to a frame cue for the parser.
_EN_ALIASES = {"which": "what", "tell": "what", "count": "how_many"}


@dataclasses.dataclass(frozen=True)
class Language:
    """One language: word table, NP order, morphology and frame templates."""

    code: str
    words: dict            # semantic key -> surface word(s)
    np_order: tuple        # order of det / size / color / texture / noun inside a noun phrase
    suffixes: frozenset    # NP parts glued to the noun with "-" (agglutination)
    plural: str            # "en" (table), "suffix" (+ri), "redup" (noun noun), "piece" (-lo), "none"
    loc: tuple             # order of ("at", "pos") in a locative phrase
    loc_glue: bool         # locative marker glued to the position word with "-"
    loc_before: bool       # locative phrase precedes its noun phrase
    frames: dict           # frame name -> tuple of template strings (paraphrases)
    aliases: dict          # extra surface word -> semantic key (parser cues)

    def noun(self, key: str, plural: bool) -> str:
        """semantic key ("shape:circle" or "object") x plural -> one surface word."""
        w = self.words[key]
        if not plural or self.plural in ("none", "piece"):
            return w
        if self.plural == "en":
            return _EN_PLURAL.get(w, w + "s")
        if self.plural == "suffix":
            return w + "ri"
        return w + w  # "redup": full reduplication, written as one word


PLURAL_PIECE = "lo"  # xe plural suffix

LANGS = {
    "en": Language("en", _EN, ("det", "size", "color", "texture", "noun"), frozenset(), "en", ("at", "pos"),
                   False, False, _EN_FRAMES, _EN_ALIASES),
    "xa": Language("xa", _TOY["xa"], ("det", "noun", "color", "size", "texture"), frozenset(), "suffix",
                   ("at", "pos"), False, False, _TOY_FRAMES["xa"], {}),
    "xb": Language("xb", _TOY["xb"], ("det", "size", "color", "texture", "noun"), frozenset(), "none",
                   ("pos", "at"), False, True, _TOY_FRAMES["xb"], {}),
    "xc": Language("xc", _TOY["xc"], ("noun", "det", "color", "size", "texture"), frozenset(), "redup",
                   ("at", "pos"), False, False, _TOY_FRAMES["xc"], {}),
    "xd": Language("xd", _TOY["xd"], ("noun", "size", "color", "texture", "det"), frozenset(), "none",
                   ("pos", "at"), False, False, _TOY_FRAMES["xd"], {}),
    "xe": Language("xe", _TOY["xe"], ("det", "noun", "color", "size", "texture"),
                   frozenset({"color", "size", "texture"}), "piece", ("pos", "at"), True, False,
                   _TOY_FRAMES["xe"], {}),
}
assert tuple(LANGS) == concepts.LANGUAGES


def language(code: str) -> Language:
    """language code -> Language; ValueError naming an unknown code."""
    if code not in LANGS:
        raise ValueError(f"unknown language {code!r}; valid languages: {', '.join(LANGS)}")
    return LANGS[code]
