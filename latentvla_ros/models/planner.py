"""The fusion-augmented end-to-end planner (Transfuser-style, camera only).

1. A convolutional encoder turns the current camera frame into a grid of image tokens,
   each tagged with a *camera-geometry* positional encoding: the azimuth and elevation of
   the ray through its pixel (from the horizontal field of view), so the BEV queries
   can learn where on the ground an image cell looks.
2. A grid of learned BEV queries (4 x 4 cells over 64 m x 64 m around the ego, each with
   its metric position) cross-attends to the image tokens.
3. **Fusion**: the BEV queries cross-attend to the latent actions — one key/value per
   future step (the action embedding, the step's code distribution and the step index)
   plus the visual embedding — from the student or the teacher. ``use_fusion=False``
   removes this block (the paper's ablation); nothing else changes.
4. A trajectory decoder (a trajectory query and an ego-status token attending to the BEV
   tokens) predicts per 0.5 s interval an acceleration and a curvature, bounded by
   ``tanh`` to the vehicle's limits; integrating them from the current speed gives the 8
   poses (x, y, yaw) in the ego frame. So every output is drivable by construction:
   speed in [0, max_speed], acceleration within [-max_deceleration, max_acceleration],
   curvature within max_curvature and lateral acceleration within its limit.
5. An auxiliary head decodes the BEV tokens into the BEV raster (drivable, markings,
   vehicles) where a log has it (simulated logs); training only.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from latentvla_ros.core.driving_command import DrivingCommand
from latentvla_ros.models.checkpoint import load_model, save_model
from latentvla_ros.models.student import EGO_STATUS_SIZE, ConvEncoder, frames_to_tensor, scaled_ego_status

KIND = "planner"
BEV_CHANNELS = 3  # simulation.bev.BEV_CHANNELS: drivable, markings, vehicles
SUBSTEPS = 5  # integration steps per output interval


@dataclass(frozen=True)
class PlannerConfig:
    image_height: int = 64
    image_width: int = 128
    camera_horizontal_fov_deg: float = 90.0  # the camera's; sets the rays' directions
    encoder_channels: tuple[int, ...] = (32, 64, 128)  # stride 8: an 8 x 16 token grid
    width: int = 128
    heads: int = 4
    # Per side. 8 -> 4 halves a training step (the BEV tokens carry most of its matrix
    # products), so 8,000 steps fit the time of 4,000 (README "Four BEV cells a side")
    bev_cells: int = 4
    bev_ahead_m: float = 48.0  # the grid covers x in [ahead - size, ahead], y in [-size/2, size/2]
    bev_size_m: float = 64.0
    image_layers: int = 2
    fusion_layers: int = 3  # 1 -> 3: fresh ADE@4s 1.231 -> 1.181 over 3 seeds (README), ~12 % more step time
    decoder_layers: int = 2
    use_fusion: bool = True
    horizon: int = 12  # latent steps fused
    codebook_size: int = 16
    latent_embedding_dim: int = 128
    num_poses: int = 8
    interval_s: float = 0.5
    max_speed_mps: float = 40.0
    max_acceleration_mps2: float = 3.0
    max_deceleration_mps2: float = 6.0
    max_curvature_per_m: float = 0.2  # ~ a 5 m turning radius
    max_lateral_acceleration_mps2: float = 4.0
    bev_output_px: int = 32
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.width % self.heads:
            raise ValueError(f"width {self.width} must be a multiple of heads {self.heads}")
        stride = 2 ** len(self.encoder_channels)
        if self.image_height % stride or self.image_width % stride:
            raise ValueError(f"image size must be a multiple of {stride}, got {self.image_height}x{self.image_width}")
        if self.bev_output_px % self.bev_cells:
            raise ValueError("bev_output_px must be a multiple of bev_cells")

    def to_dict(self) -> dict:
        values = asdict(self)
        values["encoder_channels"] = list(self.encoder_channels)
        return values

    @staticmethod
    def from_dict(values: dict) -> PlannerConfig:
        values = dict(values)
        values["encoder_channels"] = tuple(values["encoder_channels"])
        return PlannerConfig(**values)


@dataclass(frozen=True)
class LatentInput:
    """What the fusion attends to (from the student or the teacher): ``probabilities``
    (B, T, K), ``action_embeddings`` (B, T, E), ``visual_embedding`` (B, E)."""

    probabilities: torch.Tensor
    action_embeddings: torch.Tensor
    visual_embedding: torch.Tensor


@dataclass(frozen=True)
class PlannerOutput:
    """``poses`` (B, N, 3) ego frame; ``speeds`` (B, N) at each pose; ``controls`` (B, N, 2)
    acceleration (m/s^2) and curvature (1/m) per interval; ``bev_logits`` (B, 3, S, S)."""

    poses: torch.Tensor
    speeds: torch.Tensor
    controls: torch.Tensor
    bev_logits: torch.Tensor


def camera_ray_angles(config: PlannerConfig) -> torch.Tensor:
    """(h * w, 2) azimuth (left +) and elevation (up +) of the ray through each token's pixel."""
    stride = 2 ** len(config.encoder_channels)
    rows, columns = config.image_height // stride, config.image_width // stride
    focal = config.image_width / 2.0 / math.tan(math.radians(config.camera_horizontal_fov_deg) / 2.0)
    u = (torch.arange(columns) + 0.5) * stride - config.image_width / 2.0
    v = (torch.arange(rows) + 0.5) * stride - config.image_height / 2.0
    azimuth = torch.atan(-u / focal)
    elevation = torch.atan(-v / focal)
    grid_v, grid_u = torch.meshgrid(elevation, azimuth, indexing="ij")
    return torch.stack([grid_u.flatten(), grid_v.flatten()], dim=-1)


def bev_cell_centres(config: PlannerConfig) -> torch.Tensor:
    """(cells^2, 2) metric (x, y) of each BEV cell, row-major from far-left (raster layout)."""
    cell = config.bev_size_m / config.bev_cells
    x = config.bev_ahead_m - (torch.arange(config.bev_cells) + 0.5) * cell
    y = config.bev_size_m / 2.0 - (torch.arange(config.bev_cells) + 0.5) * cell
    grid_x, grid_y = torch.meshgrid(x, y, indexing="ij")
    return torch.stack([grid_x.flatten(), grid_y.flatten()], dim=-1)


def _fourier(values: torch.Tensor, frequencies: int = 4) -> torch.Tensor:
    """(..., D) -> (..., 4 D) sines and cosines at octaves."""
    scales = 2.0 ** torch.arange(frequencies, dtype=values.dtype, device=values.device)
    angles = values.unsqueeze(-1) * scales
    return torch.cat([angles.sin(), angles.cos()], dim=-1).flatten(-2)


class _CrossAttentionBlock(nn.Module):
    """Pre-norm cross-attention of queries to a memory, then a feed-forward layer."""

    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.query_norm = nn.LayerNorm(width)
        self.memory_norm = nn.LayerNorm(width)
        self.attention = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.feed_forward = nn.Sequential(
            nn.LayerNorm(width), nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width)
        )

    def forward(self, queries: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        memory = self.memory_norm(memory)
        queries = queries + self.attention(self.query_norm(queries), memory, memory, need_weights=False)[0]
        return queries + self.feed_forward(queries)


class FusionPlanner(nn.Module):
    def __init__(self, config: PlannerConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or PlannerConfig()
        width = config.width
        self.encoder = ConvEncoder(3, config.encoder_channels, 0)
        self.image_projection = nn.Linear(config.encoder_channels[-1], width)
        self.register_buffer("ray_angles", camera_ray_angles(config), persistent=False)
        self.ray_encoding = nn.Sequential(nn.Linear(16, width), nn.GELU(), nn.Linear(width, width))
        self.register_buffer("bev_centres", bev_cell_centres(config), persistent=False)
        self.bev_position = nn.Sequential(nn.Linear(16, width), nn.GELU(), nn.Linear(width, width))
        self.bev_queries = nn.Parameter(torch.randn(1, config.bev_cells**2, width) * 0.02)
        self.image_blocks = nn.ModuleList(
            nn.TransformerDecoderLayer(
                width, config.heads, 4 * width, config.dropout, activation="gelu", batch_first=True, norm_first=True
            )
            for _ in range(config.image_layers)
        )
        if config.use_fusion:
            self.latent_action = nn.Linear(config.latent_embedding_dim, width)
            self.latent_distribution = nn.Linear(config.codebook_size, width)
            self.latent_step = nn.Parameter(torch.randn(1, config.horizon, width) * 0.02)
            self.latent_visual = nn.Linear(config.latent_embedding_dim, width)
            self.fusion_blocks = nn.ModuleList(
                _CrossAttentionBlock(width, config.heads, config.dropout) for _ in range(config.fusion_layers)
            )
        self.ego_token = nn.Sequential(nn.Linear(EGO_STATUS_SIZE, width), nn.GELU(), nn.Linear(width, width))
        self.command_embedding = nn.Embedding(len(DrivingCommand), width)
        self.trajectory_query = nn.Parameter(torch.randn(1, 1, width) * 0.02)
        self.decoder_blocks = nn.ModuleList(
            nn.TransformerDecoderLayer(
                width, config.heads, 4 * width, config.dropout, activation="gelu", batch_first=True, norm_first=True
            )
            for _ in range(config.decoder_layers)
        )
        self.trajectory_head = nn.Sequential(
            nn.LayerNorm(width), nn.Linear(width, width), nn.GELU(), nn.Linear(width, 2 * config.num_poses)
        )
        upsample = config.bev_output_px // config.bev_cells
        # Narrow first, then upsample: convolving the full width at 32 x 32 was half the step's time.
        self.bev_head = nn.Sequential(
            nn.Conv2d(width, 32, 1),
            nn.GELU(),
            nn.Upsample(scale_factor=upsample, mode="bilinear", align_corners=False),
            nn.Conv2d(32, BEV_CHANNELS, 3, padding=1),
        )

    def forward(
        self,
        frames: torch.Tensor,
        ego_status: torch.Tensor,
        commands: torch.Tensor,
        latent: LatentInput | None = None,
        fusion_keep: torch.Tensor | None = None,
    ) -> PlannerOutput:
        """``frames`` (B, H, W, 3) uint8, the current camera frame; ``ego_status`` (B, 5) live;
        ``commands`` (B,); ``latent``: required with fusion, ignored without. ``fusion_keep``
        (B,) in [0, 1], training only: 0 drops a sample's fusion, so its BEV tokens are the
        image's alone (latent-action dropout; None keeps every sample's)."""
        config = self.config
        batch = len(frames)
        features = self.encoder(frames_to_tensor(frames.unsqueeze(1)))
        image = self.image_projection(features.flatten(2).transpose(1, 2))
        image = image + self.ray_encoding(_fourier(self.ray_angles))
        bev = self.bev_queries + self.bev_position(_fourier(self.bev_centres / (config.bev_size_m / 2.0)))
        bev = bev.expand(batch, -1, -1)
        for block in self.image_blocks:
            bev = block(bev, image)
        if config.use_fusion:
            if latent is None:
                raise ValueError("the fusion planner needs latent actions (student or teacher)")
            steps = (
                self.latent_action(latent.action_embeddings)
                + self.latent_distribution(latent.probabilities)
                + self.latent_step
            )
            memory = torch.cat([steps, self.latent_visual(latent.visual_embedding).unsqueeze(1)], dim=1)
            image_bev = bev
            for block in self.fusion_blocks:
                bev = block(bev, memory)
            if fusion_keep is not None:
                bev = image_bev + fusion_keep.to(bev.dtype).view(-1, 1, 1) * (bev - image_bev)
        ego = self.ego_token(scaled_ego_status(ego_status)) + self.command_embedding(commands.long())
        queries = torch.cat([self.trajectory_query.expand(batch, -1, -1), ego.unsqueeze(1)], dim=1)
        for block in self.decoder_blocks:
            queries = block(queries, bev)
        raw = self.trajectory_head(queries[:, 0]).view(batch, config.num_poses, 2)
        poses, speeds, controls = self.rollout(ego_status[:, 0], raw)
        cells = config.bev_cells
        bev_grid = bev.transpose(1, 2).reshape(batch, config.width, cells, cells)
        return PlannerOutput(poses, speeds, controls, self.bev_head(bev_grid))

    def rollout(self, speed: torch.Tensor, raw: torch.Tensor):
        """Integrate bounded controls from the current speed: (poses, speeds, controls)."""
        config = self.config
        dt = config.interval_s / SUBSTEPS
        squashed = torch.tanh(raw)
        acceleration = torch.where(
            squashed[..., 0] >= 0,
            squashed[..., 0] * config.max_acceleration_mps2,
            squashed[..., 0] * config.max_deceleration_mps2,
        )
        x = torch.zeros_like(speed)
        y = torch.zeros_like(speed)
        yaw = torch.zeros_like(speed)
        v = speed.clamp(0.0, config.max_speed_mps)
        poses, speeds, curvatures = [], [], []
        for k in range(config.num_poses):
            for _ in range(SUBSTEPS):
                v = (v + acceleration[:, k] * dt).clamp(0.0, config.max_speed_mps)
                # The tighter of the steering and the lateral-acceleration limit at this speed.
                limit = torch.minimum(
                    torch.full_like(v, config.max_curvature_per_m),
                    config.max_lateral_acceleration_mps2 / (v * v).clamp(min=1e-6),
                )
                curvature = squashed[:, k, 1] * limit
                yaw = yaw + v * curvature * dt
                x = x + v * torch.cos(yaw) * dt
                y = y + v * torch.sin(yaw) * dt
            poses.append(torch.stack([x, y, yaw], dim=-1))
            speeds.append(v)
            curvatures.append(curvature)
        controls = torch.stack([acceleration, torch.stack(curvatures, dim=1)], dim=-1)
        return torch.stack(poses, dim=1), torch.stack(speeds, dim=1), controls

    def save(self, path_stem, version: str, extra: dict | None = None):
        return save_model(self, self.config.to_dict(), path_stem, KIND, version, extra)

    @staticmethod
    def load(path_stem, expected: PlannerConfig | None = None) -> tuple[FusionPlanner, dict]:
        """The planner and its description; weights through safetensors with the sha256 checked."""
        return load_model(path_stem, KIND, PlannerConfig, FusionPlanner, expected)


def latent_input_from_arrays(probabilities, action_embeddings, visual_embedding) -> LatentInput:
    """A LatentInput from numpy arrays (any float dtype)."""
    return LatentInput(
        torch.as_tensor(np.asarray(probabilities, dtype=np.float32)),
        torch.as_tensor(np.asarray(action_embeddings, dtype=np.float32)),
        torch.as_tensor(np.asarray(visual_embedding, dtype=np.float32)),
    )


POSITION_LOSSES = ("l1", "euclidean")


def check_position_loss(kind: str) -> str:
    """``kind`` if it names a position loss; one clear error otherwise."""
    if kind not in POSITION_LOSSES:
        raise ValueError(f"position_loss must be one of {POSITION_LOSSES}, got {kind!r}")
    return kind


def planner_loss(output: PlannerOutput, target_poses: torch.Tensor, bev: torch.Tensor, bev_mask: torch.Tensor,
                 bev_weight: float, position_loss: str = "l1") -> tuple[torch.Tensor, dict]:  # fmt: skip
    """Position error of every pose (L1 on x and y, or ``euclidean``: the distance itself, which
    is what ADE averages), L1 on yaw, plus BCE on the BEV raster of the samples that have one,
    weighted by ``bev_weight`` (no default here: the training recipe owns it)."""
    offset = output.poses[..., :2] - target_poses[..., :2]
    if check_position_loss(position_loss) == "l1":
        position = offset.abs().sum(-1).mean()
    else:  # the epsilon keeps the gradient finite at 0
        position = offset.pow(2).sum(-1).add(1e-6).sqrt().mean()
    heading = (output.poses[..., 2] - target_poses[..., 2]).abs().mean()
    total = position + heading
    terms = {f"pose_{position_loss}": position.detach(), "yaw_l1": heading.detach()}
    if bool(bev_mask.any()):
        bev_loss = F.binary_cross_entropy_with_logits(output.bev_logits[bev_mask], bev[bev_mask].float())
        total = total + bev_weight * bev_loss
        terms["bev_bce"] = bev_loss.detach()
    return total, terms
