"""Audio of video clips (WORLD.md 3.6): 1-2 tones tied to bounce events or off screen, and their log-mel.

A tone is (pitch, timbre, rhythm, slot, onset): pitch low / mid / high = 220 / 440 / 880 Hz names the
"instrument", so the timbre (harmonic amplitude profile) follows the pitch; rhythm is once, twice, thrice
(beeps of BEEP s every GAP s) or continuous (onset to the end). A tone tied to an object starts at the
object's first bounce; an off-screen tone (slot -1) starts at a drawn time. The mix is peak-normalized to 0.9.
"""
from __future__ import annotations

import numpy as np

PITCH_HZ = (220.0, 440.0, 880.0)
PITCHES = ("low", "mid", "high")
RHYTHMS = ("once", "twice", "thrice", "continuous")
# Harmonic amplitudes (fundamental first) per timbre id.
TIMBRES = ((1.0,), (1.0, 0.5, 0.25), (1.0, 0.0, 0.6, 0.0, 0.3))
BEEP, GAP = 0.12, 0.25
MAX_TONES = 2
N_FFT, HOP = 400, 160


def draw_tones(u: np.ndarray, bounces: list, offscreen_p: float, duration: float, sample_rate: int) -> np.ndarray:
    """float [6*MAX_TONES] uniforms x per-slot bounce times -> int32 [MAX_TONES, 5] sources, -1 padded."""
    out = np.full((MAX_TONES, 5), -1, np.int32)
    u = u.reshape(MAX_TONES, 6)
    n = 1 + int(u[0, 0] < 0.5)
    hitting = [j for j, t in enumerate(bounces) if len(t)]
    for a in range(n):
        pitch = min(int(u[a, 1] * len(PITCHES)), len(PITCHES) - 1)
        rhythm = min(int(u[a, 2] * len(RHYTHMS)), len(RHYTHMS) - 1)
        if hitting and u[a, 3] >= offscreen_p:
            slot = hitting[min(int(u[a, 4] * len(hitting)), len(hitting) - 1)]
            onset = float(bounces[slot][0])
        else:
            slot, onset = -1, float(u[a, 5]) * 0.5 * duration
        out[a] = (pitch, pitch, rhythm, slot, min(int(round(onset * sample_rate)), int(duration * sample_rate) - 1))
    return out


def synthesize(sources: np.ndarray, n_samples: int, sample_rate: int) -> np.ndarray:
    """int32 [A, 5] sources x Ns -> float32 [Ns] waveform, peak 0.9 (all zeros when no source)."""
    t = np.arange(n_samples) / sample_rate
    wave = np.zeros(n_samples)
    for pitch, timbre, rhythm, _, onset in sources[sources[:, 0] >= 0].tolist():
        tone = sum(a * np.sin(2 * np.pi * PITCH_HZ[pitch] * (k + 1) * t) for k, a in enumerate(TIMBRES[timbre]))
        t0 = onset / sample_rate
        if RHYTHMS[rhythm] == "continuous":
            gate = t >= t0
        else:
            starts = t0 + GAP * np.arange(rhythm + 1)
            gate = ((t[:, None] >= starts) & (t[:, None] < starts + BEEP)).any(1)
        wave += tone * gate
    peak = np.abs(wave).max()
    return (wave * (0.9 / peak) if peak > 0 else wave).astype(np.float32)


def mel_filters(sample_rate: int, n_mels: int, n_fft: int = N_FFT) -> np.ndarray:
    """-> float64 [n_fft // 2 + 1, n_mels] triangular HTK-mel filterbank from 0 Hz to Nyquist."""
    def to_mel(f):
        return 2595.0 * np.log10(1.0 + f / 700.0)

    edges = 700.0 * (10 ** (np.linspace(0, to_mel(sample_rate / 2), n_mels + 2) / 2595.0) - 1.0)
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None] - lo) / (mid - lo)
    down = (hi - freqs[None]) / (hi - mid)
    return np.maximum(0.0, np.minimum(up, down)).T


def logmel(wave: np.ndarray, filters: np.ndarray, n_fft: int = N_FFT, hop: int = HOP) -> np.ndarray:
    """float [Ns] x [n_fft//2+1, M] -> float32 [1 + (Ns - n_fft) // hop, M] log(mel power + 1e-6), Hann window."""
    frames = np.lib.stride_tricks.sliding_window_view(wave.astype(np.float64), n_fft)[::hop]
    power = np.abs(np.fft.rfft(frames * np.hanning(n_fft + 1)[:-1], axis=1)) ** 2
    return np.log(power @ filters + 1e-6).astype(np.float32)
