"""Language layer of the synthetic world: lexicons, frame realizer, parser, templates, vocab, corpora."""
