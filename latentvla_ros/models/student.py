"""The distilled student: the small network that writes the latent actions on the car.

Decision-transformer style: the camera frames (the current one and those one latent
step before it, stacked) become a grid of image tokens through a small convolutional
encoder; the ego status and the driving command become one token each; 12 learned
*action slots* read them all through a transformer encoder. Each slot gives the
distribution over the 16 ego-action codes of one future step and an embedding in the
teacher's fusion space; the mean image token gives the visual embedding. So the
planner's fusion takes the student's output exactly where it takes the teacher's.
With ``autoregressive`` (off in the recipe) each slot also reads the code of the step
before it, as the teacher's step k reads its own greedy codes before k: trained on the
teacher's codes, decoded greedily (the image goes through the encoder once).

Trained by :func:`distillation_kl` to the teacher's per-step distributions (plus,
optionally, cross-entropy on the LAM's own tokens and a regression on the teacher's
embeddings). :data:`PAPER_STUDENT` is a ~50 M-parameter configuration of the same
network (the paper's student size); the default is small enough for 10 Hz on a CPU.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from latentvla_ros.core.driving_command import DrivingCommand
from latentvla_ros.models.checkpoint import load_model, save_model

KIND = "student"
EGO_STATUS_SIZE = 5  # vx, vy, ax, ay, yaw rate (core.ego_state.EgoState.status_vector)


@dataclass(frozen=True)
class StudentConfig:
    image_height: int = 64
    image_width: int = 128
    history_frames: int = 2  # the current frame and those one latent step before it
    horizon: int = 12
    codebook_size: int = 16
    embedding_dim: int = 128  # the teacher's hidden size: the fusion embedding's width
    width: int = 128
    layers: int = 3
    heads: int = 4
    encoder_channels: tuple[int, ...] = (24, 48, 96, 128)  # one stride-2 stage each
    blocks_per_stage: int = 0  # residual 3x3 blocks after each stride-2 conv
    dropout: float = 0.0
    # Each action slot also reads the code chosen for the step before it, as the teacher's
    # distribution at step k is conditioned on its own greedy codes before k; decoded greedily.
    autoregressive: bool = False

    def __post_init__(self) -> None:
        if self.width % self.heads:
            raise ValueError(f"width {self.width} must be a multiple of heads {self.heads}")
        stride = 2 ** len(self.encoder_channels)
        if self.image_height % stride or self.image_width % stride:
            raise ValueError(f"image size must be a multiple of {stride}, got {self.image_height}x{self.image_width}")

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) the camera frame is resized to."""
        return self.image_height, self.image_width

    @property
    def image_tokens(self) -> int:
        stride = 2 ** len(self.encoder_channels)
        return (self.image_height // stride) * (self.image_width // stride)

    def to_dict(self) -> dict:
        values = asdict(self)
        values["encoder_channels"] = list(self.encoder_channels)
        return values

    @staticmethod
    def from_dict(values: dict) -> StudentConfig:
        values = dict(values)
        values["encoder_channels"] = tuple(values["encoder_channels"])
        values.setdefault("autoregressive", False)  # checkpoints from before the option: one pass
        return StudentConfig(**values)


# The paper's student size (~50 M parameters): same network, wider and deeper.
PAPER_STUDENT = replace(
    StudentConfig(),
    image_height=256,
    image_width=512,
    width=512,
    layers=10,
    heads=8,
    encoder_channels=(64, 128, 256, 384, 512),
    blocks_per_stage=2,
)


@dataclass(frozen=True)
class StudentOutput:
    """``logits`` / ``probabilities`` (B, T, K); ``tokens`` (B, T); ``action_embeddings`` (B, T, E);
    ``visual_embedding`` (B, E): the same roles and shapes as the teacher's ``TeacherOutput``."""

    logits: torch.Tensor
    probabilities: torch.Tensor
    tokens: torch.Tensor
    action_embeddings: torch.Tensor
    visual_embedding: torch.Tensor


class _ConvStage(nn.Module):
    """Stride-2 conv, then residual 3x3 blocks; group norm (batch-size independent)."""

    def __init__(self, in_channels: int, out_channels: int, blocks: int) -> None:
        super().__init__()
        self.down = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1), nn.GroupNorm(8, out_channels), nn.GELU()
        )
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(out_channels, out_channels, 3, padding=1),
                nn.GroupNorm(8, out_channels),
                nn.GELU(),
                nn.Conv2d(out_channels, out_channels, 3, padding=1),
                nn.GroupNorm(8, out_channels),
            )
            for _ in range(blocks)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.down(x)
        for block in self.blocks:
            x = F.gelu(x + block(x))
        return x


class ConvEncoder(nn.Module):
    """(B, C, H, W) float in [0, 1] -> (B, channels[-1], H / 2^S, W / 2^S)."""

    def __init__(self, in_channels: int, channels: tuple[int, ...], blocks_per_stage: int) -> None:
        super().__init__()
        stages, previous = [], in_channels
        for out_channels in channels:
            stages.append(_ConvStage(previous, out_channels, blocks_per_stage))
            previous = out_channels
        self.stages = nn.Sequential(*stages)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.stages(images - 0.5)


def frames_to_tensor(frames: torch.Tensor) -> torch.Tensor:
    """(B, T, H, W, 3) uint8 -> (B, 3T, H, W) float in [0, 1], frames stacked as channels."""
    batch, history, height, width, _ = frames.shape
    return frames.permute(0, 1, 4, 2, 3).reshape(batch, history * 3, height, width).float() / 255.0


class LatentActionStudent(nn.Module):
    def __init__(self, config: StudentConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or StudentConfig()
        self.encoder = ConvEncoder(3 * config.history_frames, config.encoder_channels, config.blocks_per_stage)
        self.image_projection = nn.Linear(config.encoder_channels[-1], config.width)
        self.image_position = nn.Parameter(torch.zeros(1, config.image_tokens, config.width))
        self.ego_token = nn.Sequential(
            nn.Linear(EGO_STATUS_SIZE, config.width), nn.GELU(), nn.Linear(config.width, config.width)
        )
        self.command_token = nn.Embedding(len(DrivingCommand), config.width)
        self.action_slots = nn.Parameter(torch.zeros(1, config.horizon, config.width))
        if config.autoregressive:  # the code before each step; index codebook_size starts the sequence
            self.previous_action = nn.Embedding(config.codebook_size + 1, config.width)
            causal = torch.triu(torch.ones(config.horizon, config.horizon, dtype=torch.bool), 1)
            context_size = config.image_tokens + 2
            # Slot k attends to the whole context and to slots up to k (True: blocked).
            blocked = torch.cat([torch.zeros(config.horizon, context_size, dtype=torch.bool), causal], dim=1)
            self.register_buffer("slot_mask", blocked, persistent=False)
        layer = nn.TransformerEncoderLayer(
            config.width, config.heads, 4 * config.width, config.dropout, activation="gelu", batch_first=True,
            norm_first=True,
        )  # fmt: skip
        self.transformer = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(config.width)
        self.action_head = nn.Linear(config.width, config.codebook_size)
        self.embedding_head = nn.Linear(config.width, config.embedding_dim)
        self.visual_head = nn.Linear(config.width, config.embedding_dim)
        nn.init.normal_(self.image_position, std=0.02)
        nn.init.normal_(self.action_slots, std=0.02)

    def forward(
        self,
        frames: torch.Tensor,
        ego_status: torch.Tensor,
        commands: torch.Tensor,
        previous_codes: torch.Tensor | None = None,
    ) -> StudentOutput:
        """``frames`` (B, history, H, W, 3) uint8 oldest first; ``ego_status`` (B, 5); ``commands`` (B,).
        Autoregressive students: ``previous_codes`` (B, T) the codes each step is conditioned on
        (training: the teacher's; the last is not read); without it, greedy decoding."""
        config = self.config
        features = self.encoder(frames_to_tensor(frames))
        image = self.image_projection(features.flatten(2).transpose(1, 2)) + self.image_position
        ego = self.ego_token(scaled_ego_status(ego_status)).unsqueeze(1)
        command = self.command_token(commands.long()).unsqueeze(1)
        context = torch.cat([image, ego, command], dim=1)
        slots = self.action_slots.expand(len(frames), -1, -1)
        if not config.autoregressive:
            if previous_codes is not None:
                raise ValueError("previous_codes: this student is not autoregressive (StudentConfig.autoregressive)")
            return self._outputs(self.transformer(torch.cat([context, slots], dim=1)))
        # The context attends only to itself: it goes through the layers once, and each
        # decoding step reruns only the 12 slots against every layer's cached context.
        layer_inputs = []
        for layer in self.transformer.layers:
            layer_inputs.append(context)
            context = layer(context)
        if previous_codes is not None:
            return self._outputs(torch.cat([context, self._slots(layer_inputs, slots, previous_codes.long())], dim=1))
        codes = torch.zeros(len(frames), config.horizon, dtype=torch.long, device=context.device)
        for step in range(config.horizon):  # slot k sees codes < k only, so pass k fixes code k
            actions = self._slots(layer_inputs, slots, codes)
            codes[:, step] = self.action_head(self.norm(actions[:, step])).argmax(dim=-1)
        return self._outputs(torch.cat([context, actions], dim=1))

    def _slots(self, layer_inputs: list[torch.Tensor], slots: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """The action slots through every layer (pre-norm, as ``nn.TransformerEncoderLayer``),
        each conditioned on the code before it; the context's inputs per layer are given."""
        start = torch.full_like(codes[:, :1], self.config.codebook_size)
        x = slots + self.previous_action(torch.cat([start, codes[:, :-1]], dim=1))
        for layer, context in zip(self.transformer.layers, layer_inputs, strict=True):
            queries = layer.norm1(x)
            memory = torch.cat([layer.norm1(context), queries], dim=1)
            attended = layer.self_attn(queries, memory, memory, attn_mask=self.slot_mask, need_weights=False)[0]
            x = x + layer.dropout1(attended)
            x = x + layer.dropout2(layer.linear2(layer.dropout(layer.activation(layer.linear1(layer.norm2(x))))))
        return x

    def _outputs(self, tokens: torch.Tensor) -> StudentOutput:
        config = self.config
        tokens = self.norm(tokens)
        actions = tokens[:, -config.horizon :]
        logits = self.action_head(actions)
        probabilities = torch.softmax(logits, dim=-1)
        return StudentOutput(
            logits=logits,
            probabilities=probabilities,
            tokens=probabilities.argmax(dim=-1),
            action_embeddings=self.embedding_head(actions),
            visual_embedding=self.visual_head(tokens[:, : config.image_tokens].mean(dim=1)),
        )

    def save(self, path_stem, version: str, extra: dict | None = None):
        return save_model(self, self.config.to_dict(), path_stem, KIND, version, extra)

    @staticmethod
    def load(path_stem, expected: StudentConfig | None = None) -> tuple[LatentActionStudent, dict]:
        """The student and its description; weights through safetensors with the sha256 checked."""
        return load_model(path_stem, KIND, StudentConfig, LatentActionStudent, expected)


def scaled_ego_status(ego_status: torch.Tensor) -> torch.Tensor:
    """Ego status in units the network handles (speeds ~30 m/s, accelerations ~3 m/s^2)."""
    return ego_status / torch.tensor([10.0, 1.0, 2.0, 2.0, 0.2], device=ego_status.device)


def distillation_kl(student_logits: torch.Tensor, teacher_probabilities: torch.Tensor, temperature: float = 1.0):
    """Per-step KL(teacher || student) in nats, averaged over batch and steps; both sides at
    ``temperature`` (teacher probabilities re-tempered through their logarithm), times T^2
    as in Hinton et al. so gradients keep their scale. Zero when the distributions match."""
    teacher_log = torch.log(teacher_probabilities.clamp(min=1e-8))
    teacher_tempered = torch.log_softmax(teacher_log / temperature, dim=-1)
    student_tempered = torch.log_softmax(student_logits / temperature, dim=-1)
    kl = (teacher_tempered.exp() * (teacher_tempered - student_tempered)).sum(dim=-1)
    return kl.mean() * temperature**2
