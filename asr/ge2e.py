"""Resemblyzer's GE2E speaker encoder as a pyannote embedding model; import it only through `asr.diarize`.

`asr.diarize` keeps torchaudio's compiled libraries unloaded before pyannote is imported; importing this module
first would load them and fail on a machine whose torchaudio build does not match torch.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from pyannote.audio import Model
from torch import nn
from torchaudio.transforms import MelSpectrogram

SAMPLE_RATE = 16000
MEL_BANDS = 40
WINDOW_FRAMES = 160
STEP_FRAMES = 80
HIDDEN_SIZE = 256
EMBEDDING_SIZE = 256
TARGET_DBFS = -30.0


class GE2ENetwork(nn.Module):
    """The GE2E network: 3-layer LSTM (256), linear to 256, ReLU, L2 norm; loads resemblyzer's `model_state`."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(MEL_BANDS, HIDDEN_SIZE, num_layers=3, batch_first=True)
        self.linear = nn.Linear(HIDDEN_SIZE, EMBEDDING_SIZE)

    def forward(self, windows: list[torch.Tensor]) -> torch.Tensor:
        """Unit-length embeddings (n, 256) of mel windows, each (frames, 40) and of any length."""
        packed = nn.utils.rnn.pack_sequence(windows, enforce_sorted=False)
        _, (hidden, _) = self.lstm(packed)
        return F.normalize(F.relu(self.linear(hidden[-1])), dim=1)


class GE2EEmbedding(Model):
    """GE2E as a pyannote `Model`: 40-band power mel, 160-frame windows, mean of the window embeddings."""

    def __init__(self, checkpoint: Path) -> None:
        super().__init__(sample_rate=SAMPLE_RATE, num_channels=1)
        self.mel = MelSpectrogram(sample_rate=SAMPLE_RATE, n_fft=400, hop_length=160, n_mels=MEL_BANDS,
                                  norm="slaney", mel_scale="slaney")
        self.network = GE2ENetwork()
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)["model_state"]
        self.network.load_state_dict({k: v for k, v in state.items() if not k.startswith("similarity_")})

    @property
    def dimension(self) -> int:
        """Size of an embedding."""
        return EMBEDDING_SIZE

    def forward(self, waveforms: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        """Embeddings (batch, 256) of waveforms (batch, 1, samples), each over the frames its weights mark.

        A waveform whose weights mark no frame gets a NaN embedding, which pyannote's clustering skips.
        """
        samples, device = waveforms[:, 0], waveforms.device
        mels = self.mel(samples).transpose(1, 2)
        if weights is None:
            weights = torch.ones(len(samples), mels.shape[1], device=device)
        frame_mask = F.interpolate(weights[:, None].float(), size=mels.shape[1], mode="nearest")[:, 0] > 0.5
        sample_mask = F.interpolate(weights[:, None].float(), size=samples.shape[1], mode="nearest")[:, 0] > 0.5
        windows, owners = [], []
        for i in range(len(samples)):
            active = mels[i][frame_mask[i]]
            if len(active) == 0:
                continue
            active = active * _gain_to_target(samples[i][sample_mask[i]]) ** 2
            for start in _window_starts(len(active)):
                windows.append(active[start : start + WINDOW_FRAMES])
                owners.append(i)
        embeddings = torch.full((len(samples), EMBEDDING_SIZE), float("nan"), device=device)
        if windows:
            owner_index = torch.tensor(owners, device=device)
            sums = torch.zeros(len(samples), EMBEDDING_SIZE, device=device)
            sums.index_add_(0, owner_index, self.network(windows))
            used = torch.unique(owner_index)
            embeddings[used] = F.normalize(sums[used], dim=1)
        return embeddings


def _gain_to_target(active_samples: torch.Tensor) -> float:
    """The amplitude gain that brings speech to -30 dBFS, as resemblyzer's preprocessing does (never below 1)."""
    power = float(torch.mean(active_samples**2))
    if power <= 0.0:
        return 1.0
    return max(1.0, 10 ** ((TARGET_DBFS - 10 * math.log10(power)) / 20))


def _window_starts(num_frames: int) -> list[int]:
    """Starts of 160-frame windows, half overlapping, the last one flush with the end; one window if shorter."""
    if num_frames <= WINDOW_FRAMES:
        return [0]
    starts = list(range(0, num_frames - WINDOW_FRAMES + 1, STEP_FRAMES))
    if starts[-1] != num_frames - WINDOW_FRAMES:
        starts.append(num_frames - WINDOW_FRAMES)
    return starts
