"""The latent action model (LAM): actions learned from unlabeled driving logs.

LAPO-style inverse/forward dynamics with a discrete bottleneck, in the two
stages of LatentVLA that separate the world's motion from the ego's:

1. **Environment action.** An inverse-dynamics encoder (IDM) sees frames
   t-1, t, t+1 *and* the ground-truth ego motion from t to t+1 with the ego
   state; a forward-dynamics decoder (FDM) reconstructs frame t+1 from frame
   t, the ego motion and the quantized action. What the encoder still has to
   pass through its 16-code bottleneck is what ego motion does not explain:
   the environment action (other agents, scene change). Its codebook is then
   frozen.
2. **Ego action.** A second IDM sees frames t-1, t, t+1 and the (frozen)
   environment action, but no ego motion; its new 16-code codebook must
   carry what the decoder needs besides the environment action: the ego
   action. The decoder reconstructs frame t+1 from frame t, the environment
   action and the ego action.

Codebooks are VQ-VAE codebooks updated by exponential moving averages with a
commitment loss (LAPO: commitment 0.05, decay 0.999) and restart unused codes
from encoder outputs so all 16 stay in use. Every size lives in
:class:`LatentActionConfig`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.nn import functional

from latentvla_ros.core.validation import check_loss_weight

EGO_MOTION_DIM = 3  # dx, dy, dyaw from t to t+1 in the ego frame at t
EGO_STATE_DIM = 5  # vx, vy, ax, ay, yaw rate
EGO_SPEED_SCALE_MPS = 10.0  # ego_state[:, 0] is the forward speed in these units
EGO_MOTION_SCALE = (5.0, 0.5, 0.1)  # ego_motion is dx (m), dy (m), dyaw (rad) over the step in these units
WARP_GEOMETRIES = ("shift_zoom", "ground_plane")


# Every term weight a --set may change; each must be a finite number >= 0 (NaN compares false).
LOSS_WEIGHTS = (
    "commitment_weight",
    "environment_adversary_weight",
    "environment_diversity_weight",
    "environment_residual_weight",
    "ego_speed_adversary_weight",
    "reconstruction_weight",
)


@dataclass(frozen=True)
class LatentActionConfig:
    """Every size of the LAM. Frames are (3, height, width) in [0, 1]."""

    frame_height: int = 32
    frame_width: int = 64
    history_frames: int = 1  # frames before t the encoder sees (t-1)
    frame_period_s: float = 0.1  # the camera rate the data must have (10 Hz)
    # One latent step, t -> t+1, is this many camera frames: 0.3 s, so 12 steps span ~the
    # planner's 4 s horizon, and even at low speed the image changes measurably in a step.
    step_frames: int = 3
    encoder_channels: tuple[int, ...] = (16, 32, 32)
    decoder_channels: tuple[int, ...] = (24, 48, 64)
    latent_dim: int = 32
    codebook_size: int = 16
    commitment_weight: float = 0.05
    ema_decay: float = 0.99
    dead_code_threshold: float = 0.1  # restart codes used less than this share of an even split
    # The same for the ego codebook (stage 2). A restarted code is re-seeded inside a used
    # cluster and splits it, so restarts keep all 16 ego codes in play; 0 lets rare ones die
    # (weighted 80 x 40, two seeds: ego perplexity 13.8 -> 11.9-12.5, ego AMI 0.208 -> 0.23).
    ego_dead_code_threshold: float = 0.1
    usage_decay: float = 0.9  # of the usage statistic: an unused code is restarted after ~20 steps
    conditioning_dim: int = 32
    # Stage 1: an adversary learns to read the ego motion from the environment latent; the
    # encoder is trained to make it predict only the batch mean (confusion), which keeps ego
    # motion out of the environment action (0 disables it). v1.0 reversed the adversary's
    # gradient instead: maximizing an unbounded regression error blew up the IDM's scale.
    environment_adversary_weight: float = 0.5
    # Stage 1: conditioned on the true ego motion, little is left for the environment action
    # and one code took 84% of the data. A diversity term (wav2vec 2.0) rewards using the
    # codebook evenly over a batch: the soft-assignment perplexity, (K - ppl) / K.
    environment_diversity_weight: float = 0.05
    diversity_temperature: float = 0.1
    # Stage 1: move frame t by the true ego motion over the step (odometry, through the
    # ground-plane warp below) before the decoder sees it, and show the environment IDM
    # what that motion leaves unexplained (frame t+1 minus the moved frame t). Told the ego
    # motion only as FiLM conditioning, the environment tokens of lam_v2.0 still told the
    # ego maneuver (fresh AMI 0.126) about as well as the other agents' motion (0.110).
    environment_ego_warp: bool = False
    # With environment_ego_warp: the stage-1 decoder sees frame t both moved and unmoved (and
    # still adds its residual to the moved one): a flat ground misplaces what stands up
    # (vehicles, the horizon), the unmoved frame has it where it was. Measured (README): the
    # environment token's gain over the best constant code -1.4 % -> +1.1 % on fresh drives.
    environment_decoder_unmoved: bool = False
    # Stage 1: weight each pixel's loss by 1 + this x (how much of frame t+1 the moved frame t
    # leaves unexplained, relative to the batch mean), so the few pixels of a moving vehicle
    # count more than the road the ego motion already explains (0: plain MSE). Evaluation
    # figures stay plain MSE; only the training loss term "reconstruction" is the weighted one.
    environment_residual_weight: float = 0.0
    # Stage 2: the decoder is told the ego speed at t (a state, from odometry), so the ego
    # token carries what the ego *does* (turning, speeding up) rather than how fast it goes.
    ego_decoder_speed: bool = True
    # Stage 2: as stage 1's adversary, on the ego latent and for the ego speed at t only (not
    # the yaw rate or acceleration at t, which tell the action). Told the speed, the decoder
    # does not need it, yet the ego codes of nd_s0 (weighted 80 x 40) split straight driving
    # by speed (2.7 .. 22 m/s): token entropy spent on a state (0 disables it). Measured
    # (docs/experiments.md): 0.2 leaves speed probe R² 0.32 and no AMI gain; 0.5 and 2 collapse.
    ego_speed_adversary_weight: float = 0.0
    # Stage 2: the decoder first warps frame t by a global shift and zoom computed from the
    # actions, then adds its residual. At 64x32 a typical yaw over a step moves the image by
    # about a pixel; without this prior the ego codes carried scene detail, not the motion.
    ego_decoder_warp: bool = True
    # Stage 2: the ego action reaches the decoder *only* through that warp (the camera's own
    # motion), while the residual network is conditioned on the environment action and the
    # speed. With FiLM from the ego token as well, the 16 codes split the data by scene detail
    # and the yaw was only partly in them (held-out probe R² 0.32 from the codes, 0.65 from the
    # encoder's features).
    ego_action_warp_only: bool = False
    # The warp's geometry: "shift_zoom" (a global shift and zoom of the image) or
    # "ground_plane": the ego's planar motion (dx, dy, dyaw) over the step moves a flat ground
    # seen by the calibrated camera below and a sky at infinity; dx starts at speed x step.
    ego_warp_geometry: str = "shift_zoom"
    # The camera, for the ground-plane warp (defaults: the simulator's front camera; frames are
    # the whole picture resized, so only the field of view matters, not the pixel count).
    camera_horizontal_fov_deg: float = 90.0
    camera_height_m: float = 1.5
    camera_pitch_down_deg: float = 3.0
    camera_forward_m: float = 0.5  # ahead of base_link, whose origin the ego turns about
    max_ground_distance_m: float = 150.0  # farther ground is treated as the sky (rotation only)
    # Stage 2: the ego IDM also reads a cost volume: how well each candidate planar motion of
    # the camera (forward at the current speed; yaw x lateral offsets below) explains frame t+1
    # from frame t through the ground-plane warp. Images and calibration only, no labels: the
    # encoder's own features told the yaw with held-out R² ~0.7 at 64x32, where a typical
    # step's yaw moves the picture by about a pixel.
    ego_motion_cost_volume: bool = False
    cost_volume_max_yaw_rad: float = 0.15
    cost_volume_yaw_steps: int = 13
    cost_volume_max_lateral_m: float = 0.4
    cost_volume_lateral_steps: int = 1  # 1: dy = 0 only
    # Next-frame MSE is ~1e-3 (small, smooth images): weighted so it, not the commitment term, leads.
    reconstruction_weight: float = 100.0
    difference_gain: float = 5.0  # frame differences are small; amplify them for the IDM
    horizon: int = 12  # future ego tokens per frame (the teacher's target)

    def __post_init__(self) -> None:
        if self.ego_action_warp_only and not self.ego_decoder_warp:
            raise ValueError("ego_action_warp_only needs ego_decoder_warp")
        if self.environment_decoder_unmoved and not self.environment_ego_warp:
            raise ValueError("environment_decoder_unmoved needs environment_ego_warp")
        for name in (*LOSS_WEIGHTS, "dead_code_threshold", "ego_dead_code_threshold"):
            check_loss_weight(name, getattr(self, name))
        if self.ego_warp_geometry not in WARP_GEOMETRIES:
            raise ValueError(
                f"ego_warp_geometry must be one of {', '.join(WARP_GEOMETRIES)}, got '{self.ego_warp_geometry}'"
            )

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        return (3, self.frame_height, self.frame_width)

    @property
    def step_s(self) -> float:
        return self.step_frames * self.frame_period_s

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(values: dict) -> LatentActionConfig:
        values = dict(values)
        for key in ("encoder_channels", "decoder_channels"):
            values[key] = tuple(values[key])
        return LatentActionConfig(**values)


# --- vector quantization ----------------------------------------------------------


@dataclass
class Quantized:
    """``embedding`` (B, D) straight-through quantized vectors; ``tokens`` (B,) code ids;
    ``commitment_loss`` scalar; ``distances`` (B, K) squared distances to the codes."""

    embedding: torch.Tensor
    tokens: torch.Tensor
    commitment_loss: torch.Tensor
    distances: torch.Tensor
    latent: torch.Tensor  # (B, D) the encoder output before quantization

    def diversity_loss(self, temperature: float) -> torch.Tensor:
        """(K - perplexity of the batch's mean soft assignment) / K: 0 when codes are used
        evenly, near 1 when one code takes everything. Gradients reach the latents."""
        # Squared distances of unit vectors: -d / 2 is the cosine similarity up to a constant.
        assignment = functional.softmax(-self.distances / (2.0 * temperature), dim=1).mean(dim=0)
        size = assignment.shape[0]
        soft_perplexity = torch.exp(-(assignment * torch.log(assignment + 1e-9)).sum())
        return (size - soft_perplexity) / size


class VectorQuantizerEMA(nn.Module):
    """VQ-VAE codebook with EMA updates, commitment loss and dead-code restarts.

    Latents and codes are L2-normalized (cosine-similarity VQ): codes cannot
    collapse onto one scale, which kept all 16 in use where plain VQ used one.
    """

    def __init__(
        self,
        codebook_size: int,
        dim: int,
        decay: float,
        commitment_weight: float,
        dead_threshold: float,
        usage_decay: float = 0.9,
    ):
        super().__init__()
        self.decay = decay
        self.usage_decay = usage_decay
        self.commitment_weight = commitment_weight
        self.dead_threshold = dead_threshold
        self.frozen = False
        embedding = torch.randn(codebook_size, dim) * 0.1
        self.register_buffer("codebook", embedding)
        self.register_buffer("ema_count", torch.ones(codebook_size))
        self.register_buffer("ema_sum", embedding.clone())
        self.register_buffer("usage", torch.full((codebook_size,), 1.0 / codebook_size))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    @property
    def codebook_size(self) -> int:
        return self.codebook.shape[0]

    def freeze(self) -> None:
        """Stop EMA updates and restarts (stage 2 keeps the environment codebook fixed)."""
        self.frozen = True

    def forward(self, latent: torch.Tensor) -> Quantized:
        latent = functional.normalize(latent, dim=1)
        if self.training and not self.frozen and not bool(self.initialized):
            self._initialize_from(latent.detach())
        # A copy: the EMA update below changes the codebook in place, and the distances stay
        # in the graph (the diversity term backpropagates through them to the latents).
        codebook = self.codebook.clone()
        distances = (
            latent.pow(2).sum(dim=1, keepdim=True) - 2.0 * latent @ codebook.t() + codebook.pow(2).sum(dim=1)[None, :]
        )
        tokens = distances.argmin(dim=1)
        quantized = codebook[tokens]
        if self.training and not self.frozen:
            self._ema_update(latent.detach(), tokens)
        commitment = functional.mse_loss(latent, quantized.detach())
        # Straight-through estimator: forward the code, backpropagate to the encoder output.
        straight_through = latent + (quantized - latent).detach()
        return Quantized(straight_through, tokens, self.commitment_weight * commitment, distances, latent)

    @torch.no_grad()
    def _initialize_from(self, latent: torch.Tensor) -> None:
        """Data-dependent start: codes at distinct encoder outputs of the first batch."""
        rows = torch.randperm(latent.shape[0], generator=torch.Generator().manual_seed(0))[: self.codebook_size]
        chosen = latent[rows.to(latent.device)]
        if len(chosen) < self.codebook_size:
            chosen = torch.cat([chosen, functional.normalize(self.codebook[len(chosen) :], dim=1)])
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.broadcast(chosen, src=0)
        self.codebook.copy_(chosen)
        self.ema_sum.copy_(chosen)
        self.ema_count.fill_(1.0)
        self.initialized.fill_(True)

    @torch.no_grad()
    def _ema_update(self, latent: torch.Tensor, tokens: torch.Tensor) -> None:
        one_hot = functional.one_hot(tokens, self.codebook_size).type(latent.dtype)
        counts = one_hot.sum(dim=0)
        sums = one_hot.t() @ latent
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(counts)
            torch.distributed.all_reduce(sums)
        self.ema_count.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.ema_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        total = self.ema_count.sum()
        smoothed = (self.ema_count + 1e-5) / (total + self.codebook_size * 1e-5) * total
        self.codebook.copy_(functional.normalize(self.ema_sum / smoothed[:, None], dim=1))
        self.usage.mul_(self.usage_decay).add_(counts / counts.sum().clamp(min=1), alpha=1 - self.usage_decay)
        self._restart_dead_codes(latent)

    @torch.no_grad()
    def _restart_dead_codes(self, latent: torch.Tensor) -> None:
        dead = self.usage < self.dead_threshold / self.codebook_size
        if not dead.any() or latent.shape[0] == 0:
            return
        # Identical on every rank: pick the replacement rows from a generator seeded by the usage state.
        generator = torch.Generator(device="cpu").manual_seed(int(self.usage.sum().item() * 1e6) % (2**31))
        rows = torch.randint(0, latent.shape[0], (int(dead.sum()),), generator=generator)
        noise = 0.05 * torch.randn(int(dead.sum()), latent.shape[1], generator=generator).to(latent.device)
        replacement = functional.normalize(latent[rows.to(latent.device)] + noise, dim=1)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.broadcast(replacement, src=0)
        self.codebook[dead] = replacement
        self.ema_sum[dead] = replacement
        self.ema_count[dead] = 1.0
        self.usage[dead] = 1.0 / self.codebook_size


# --- encoders and decoders ------------------------------------------------------------


class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(functional.relu(self.conv1(functional.relu(x))))


class ImpalaEncoder(nn.Module):
    """IMPALA-CNN: per stage a conv, a max-pool and two residual blocks (LAPO's IDM).

    The flattened features are layer-normalized before the head. Everything after the
    head is scale-invariant (batch-norm, cosine VQ), so the loss never resists growth of
    the residual stack's gain; in v1.0 the environment IDM's activations grew ~4x per
    block to ~1e5, the batch-norm running mean could not follow, and in eval mode every
    latent pointed one way (one code). With the norm the head sees unit-scale features.
    """

    def __init__(self, in_channels: int, channels: tuple[int, ...], frame_hw: tuple[int, int], out_dim: int):
        super().__init__()
        layers = []
        for width in channels:
            layers += [
                nn.Conv2d(in_channels, width, 3, padding=1),
                nn.MaxPool2d(3, 2, 1),
                ResidualBlock(width),
                ResidualBlock(width),
            ]
            in_channels = width
        self.features = nn.Sequential(*layers)
        height, width = frame_hw
        for _ in channels:
            height, width = (height + 1) // 2, (width + 1) // 2
        self.norm = nn.LayerNorm(in_channels * height * width, elementwise_affine=False)
        self.head = nn.Linear(in_channels * height * width, out_dim)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(functional.relu(self.features(frames)).flatten(1)))


class GroundPlaneWarp(nn.Module):
    """Frame t as the camera would see it after the ego's planar motion (dx, dy, dyaw) in
    the ego frame at t: every pixel of frame t+1 is traced to the flat ground (below the
    horizon, within ``max_ground_distance_m``) or to infinity (the sky: rotation only),
    moved back into frame t and sampled there. Differentiable in the motion."""

    def __init__(self, config: LatentActionConfig) -> None:
        super().__init__()
        height, width = config.frame_height, config.frame_width
        focal = width / 2.0 / torch.tan(torch.deg2rad(torch.tensor(config.camera_horizontal_fov_deg)) / 2.0)
        v, u = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
        rays_optical = torch.stack([(u - width / 2) / focal, (v - height / 2) / focal, torch.ones_like(u)], dim=-1)
        pitch = torch.deg2rad(torch.tensor(config.camera_pitch_down_deg))
        axes = torch.tensor([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
        about_y = torch.tensor(
            [[torch.cos(pitch), 0.0, torch.sin(pitch)], [0.0, 1.0, 0.0], [-torch.sin(pitch), 0.0, torch.cos(pitch)]]
        )
        optical_to_base = about_y @ axes
        rays = rays_optical @ optical_to_base.T  # (H, W, 3) in base_link
        origin = torch.tensor([config.camera_forward_m, 0.0, config.camera_height_m])
        down = rays[..., 2] < -1e-6
        distance = torch.where(down, config.camera_height_m / (-rays[..., 2]).clamp(min=1e-6), torch.inf)
        ground = down & (distance * rays[..., :2].norm(dim=-1) < config.max_ground_distance_m)
        points = origin + torch.where(ground, distance, 0.0)[..., None] * rays
        self.register_buffer("rays", rays, persistent=False)
        self.register_buffer("points", points, persistent=False)
        self.register_buffer("ground", ground, persistent=False)
        self.register_buffer("origin", origin, persistent=False)
        self.register_buffer("base_to_optical", optical_to_base, persistent=False)  # row vectors: v @ R
        self.focal = float(focal)
        self.size = (height, width)

    def forward(self, current: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
        """``current`` (B, 3, H, W); ``motion`` (B, 3): dx, dy (m), dyaw (rad) from t to t+1."""
        dx, dy, dyaw = motion.unbind(dim=1)
        cos, sin = torch.cos(dyaw)[:, None, None], torch.sin(dyaw)[:, None, None]

        def rotate(vectors: torch.Tensor) -> torch.Tensor:  # (H, W, 3) -> (B, H, W, 3), about z
            x, y, z = vectors.unbind(dim=-1)
            return torch.stack([cos * x - sin * y, sin * x + cos * y, z.expand_as(cos * x)], dim=-1)

        # Ground points and sky directions of frame t+1, expressed in the ego frame at t.
        ground_points = rotate(self.points) + torch.stack([dx, dy, torch.zeros_like(dx)], dim=1)[:, None, None, :]
        sky_directions = rotate(self.rays)
        in_camera = torch.where(self.ground[..., None], ground_points - self.origin, sky_directions)
        optical = in_camera @ self.base_to_optical
        depth = optical[..., 2].clamp(min=1e-3)
        height, width = self.size
        u = optical[..., 0] / depth * self.focal + width / 2.0
        v = optical[..., 1] / depth * self.focal + height / 2.0
        grid = torch.stack([u / width * 2.0 - 1.0, v / height * 2.0 - 1.0], dim=-1)
        return functional.grid_sample(current, grid, padding_mode="border", align_corners=False)


class MotionCostVolume(nn.Module):
    """(B,) candidate costs: the log mean squared error of frame t warped by each candidate
    planar motion (dx = speed x step; a grid of yaw and lateral offsets) against frame t+1,
    standardized per window so only their shape counts (which candidate fits best)."""

    def __init__(self, config: LatentActionConfig) -> None:
        super().__init__()
        self.warp = GroundPlaneWarp(config)
        yaw = torch.linspace(
            -config.cost_volume_max_yaw_rad, config.cost_volume_max_yaw_rad, config.cost_volume_yaw_steps
        )
        lateral = (
            torch.linspace(
                -config.cost_volume_max_lateral_m, config.cost_volume_max_lateral_m, config.cost_volume_lateral_steps
            )
            if config.cost_volume_lateral_steps > 1
            else torch.zeros(1)
        )
        grid = torch.stack(torch.meshgrid(lateral, yaw, indexing="ij"), dim=-1).reshape(-1, 2)
        self.register_buffer("candidates", grid, persistent=False)  # (K, 2): dy, dyaw
        self.step_s = config.step_s

    @property
    def size(self) -> int:
        return len(self.candidates)

    @torch.no_grad()
    def forward(self, current: torch.Tensor, target: torch.Tensor, speed_mps: torch.Tensor) -> torch.Tensor:
        batch, count = len(current), self.size
        forward = (speed_mps * self.step_s).repeat_interleave(count)[:, None]
        motion = torch.cat([forward, self.candidates.repeat(batch, 1)], dim=1)
        warped = self.warp(current.repeat_interleave(count, dim=0), motion)
        error = ((warped - target.repeat_interleave(count, dim=0)) ** 2).mean(dim=(1, 2, 3)).view(batch, count)
        costs = torch.log(error + 1e-6)
        return (costs - costs.mean(dim=1, keepdim=True)) / (costs.std(dim=1, keepdim=True) + 1e-3)


class ForwardDynamics(nn.Module):
    """UNet-style decoder: frame t plus action vectors -> frame t+1.

    Only frame t: given t-1 as well, the decoder extrapolates the motion itself,
    never needs the action, and the action codebook collapses to one code.

    The action vector modulates every scale (FiLM); the output is a residual
    added to frame t, so "nothing changes" is the easy default and the model
    spends its capacity on what moves.
    """

    def __init__(
        self,
        config: LatentActionConfig,
        action_dim: int,
        global_warp: bool = False,
        warp_dim: int = 0,
        context_channels: int = 3,
    ):
        super().__init__()
        in_channels = context_channels  # what the network reads; it predicts a 3-channel residual
        # From the actions (or from a separate warp input of ``warp_dim``), zero at start:
        # shift_zoom: (shift x, shift y, zoom) of frame t in grid units; ground_plane: the
        # corrections (dx, dy in m, dyaw in 0.1 rad) to moving straight on at the current speed.
        self.warp = nn.Linear(warp_dim or action_dim, 3) if global_warp else None
        ground_plane = global_warp and config.ego_warp_geometry == "ground_plane"
        self.ground_plane = GroundPlaneWarp(config) if ground_plane else None
        self.step_s = config.step_s
        if self.warp is not None:
            nn.init.zeros_(self.warp.weight)
            nn.init.zeros_(self.warp.bias)
        widths = config.decoder_channels
        self.down = nn.ModuleList()
        self.film = nn.ModuleList()
        previous = in_channels
        for width in widths:
            self.down.append(
                nn.Sequential(
                    nn.Conv2d(previous, width, 3, stride=2, padding=1),
                    nn.GELU(),
                    nn.Conv2d(width, width, 3, padding=1),
                    nn.GELU(),
                )
            )
            self.film.append(nn.Linear(action_dim, 2 * width))
            previous = width
        self.up = nn.ModuleList()
        for index in range(len(widths) - 1, -1, -1):
            skip = widths[index - 1] if index > 0 else in_channels
            out = widths[index - 1] if index > 0 else 32
            self.up.append(
                nn.Sequential(
                    nn.Conv2d(widths[index] + skip, out, 3, padding=1),
                    nn.GELU(),
                    nn.Conv2d(out, out, 3, padding=1),
                    nn.GELU(),
                )
            )
        self.out = nn.Conv2d(32, 3, 1)
        # Start (almost) as "copy frame t": a tiny residual, not zero, so gradients reach the
        # actions from the first step (a zero layer would block them).
        nn.init.normal_(self.out.weight, std=1e-3)
        nn.init.zeros_(self.out.bias)

    def warped(
        self, current: torch.Tensor, action: torch.Tensor, speed_mps: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Frame t moved as the actions say (identity without a warp)."""
        if self.warp is None:
            return current
        if self.ground_plane is not None:
            correction = self.warp(action) * torch.tensor([1.0, 1.0, 0.1], device=action.device)
            forward = speed_mps * self.step_s if speed_mps is not None else torch.zeros_like(correction[:, 0])
            return self.ground_plane(current, correction + torch.stack([forward, 0 * forward, 0 * forward], dim=1))
        shift_x, shift_y, zoom = self.warp(action).unbind(dim=1)
        scale = torch.exp(-zoom)  # sampling a smaller area: the picture grows (moving forward)
        zeros = torch.zeros_like(scale)
        theta = torch.stack(
            [torch.stack([scale, zeros, shift_x], dim=1), torch.stack([zeros, scale, shift_y], dim=1)], dim=1
        )
        grid = functional.affine_grid(theta, list(current.shape), align_corners=False)
        return functional.grid_sample(current, grid, padding_mode="border", align_corners=False)

    def forward(
        self,
        context_frames: torch.Tensor,
        current: torch.Tensor,
        action: torch.Tensor,
        warp_action: torch.Tensor | None = None,
        speed_mps: torch.Tensor | None = None,
    ) -> torch.Tensor:
        current = self.warped(current, action if warp_action is None else warp_action, speed_mps)
        context_frames = current if self.warp is not None else context_frames
        skips = [context_frames]
        x = context_frames
        for down, film in zip(self.down, self.film, strict=True):
            x = down(x)
            scale, shift = film(action).chunk(2, dim=1)
            x = x * (1 + scale[:, :, None, None]) + shift[:, :, None, None]
            skips.append(x)
        skips.pop()
        for up in self.up:
            skip = skips.pop()
            x = functional.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = up(torch.cat([x, skip], dim=1))
        return current + self.out(x)


# --- the two-stage model ----------------------------------------------------------------


@dataclass
class LamOutput:
    """``prediction`` (B, 3, H, W) of frame t+1; tokens (B,) per codebook; the loss terms."""

    prediction: torch.Tensor
    environment: Quantized
    ego: Quantized | None
    reconstruction_loss: torch.Tensor
    losses: dict = field(default_factory=dict)

    @property
    def loss(self) -> torch.Tensor:
        return sum(self.losses.values())


def residual_weighted_mse(
    prediction: torch.Tensor, target: torch.Tensor, moved: torch.Tensor, gain: float
) -> torch.Tensor:
    """MSE with per-pixel weights 1 + gain x |target - moved| / its batch mean (channel mean,
    no gradient), normalised by the mean weight: plain MSE where the residual is uniform."""
    residual = (target - moved).abs().mean(dim=1, keepdim=True).detach()
    weight = 1.0 + gain * residual / residual.mean().clamp_min(1e-8)
    return (weight * (prediction - target).square()).mean() / weight.mean()


class LatentActionModel(nn.Module):
    """Both stages' encoders and decoders. ``forward(batch, stage)`` with stage 1 or 2."""

    def __init__(self, config: LatentActionConfig):
        super().__init__()
        self.config = config
        # The IDM sees the frames and their differences: motion is in the differences, while
        # raw frames are dominated by the static road.
        in_channels = 3 * (2 * (config.history_frames + 2) - 1)
        frame_hw = (config.frame_height, config.frame_width)
        d, c = config.latent_dim, config.conditioning_dim
        self.ego_conditioning = nn.Sequential(nn.Linear(EGO_MOTION_DIM + EGO_STATE_DIM, c), nn.GELU(), nn.Linear(c, c))
        # Stage 1: environment action, told the ego motion (and, with environment_ego_warp,
        # shown frame t moved by it).
        self.ego_motion_warp = GroundPlaneWarp(config) if config.environment_ego_warp else None
        environment_channels = in_channels + (3 if config.environment_ego_warp else 0)
        self.environment_encoder = ImpalaEncoder(environment_channels, config.encoder_channels, frame_hw, 64)
        # Batch-normalized outputs: latents spread over the codebook instead of all
        # pointing one way (which collapsed every codebook to one code).
        self.environment_head = nn.Sequential(
            nn.Linear(64 + c, 64), nn.GELU(), nn.Linear(64, d), nn.BatchNorm1d(d, affine=False)
        )
        self.environment_codebook = VectorQuantizerEMA(
            config.codebook_size, d, config.ema_decay, config.commitment_weight, config.dead_code_threshold
        )
        unmoved_channels = 3 if config.environment_decoder_unmoved else 0
        self.stage1_decoder = ForwardDynamics(config, d + c, context_channels=3 + unmoved_channels)
        self.environment_adversary = nn.Sequential(
            nn.Linear(d, 64), nn.GELU(), nn.Linear(64, EGO_MOTION_DIM + EGO_STATE_DIM)
        )
        # Stage 2: ego action, told the environment action instead of the ego motion.
        self.ego_encoder = ImpalaEncoder(in_channels, config.encoder_channels, frame_hw, 64)
        self.motion_costs = MotionCostVolume(config) if config.ego_motion_cost_volume else None
        costs = self.motion_costs.size if self.motion_costs is not None else 0
        self.ego_head = nn.Sequential(
            nn.Linear(64 + d + costs, 64), nn.GELU(), nn.Linear(64, d), nn.BatchNorm1d(d, affine=False)
        )
        self.ego_codebook = VectorQuantizerEMA(
            config.codebook_size, d, config.ema_decay, config.commitment_weight, config.ego_dead_code_threshold
        )
        self.speed_conditioning = nn.Sequential(nn.Linear(1, c), nn.GELU(), nn.Linear(c, c))
        self.ego_speed_adversary = (
            nn.Sequential(nn.Linear(d, 64), nn.GELU(), nn.Linear(64, 1))
            if config.ego_speed_adversary_weight > 0.0
            else None
        )
        speed_dim = c if config.ego_decoder_speed else 0
        self.stage2_decoder = ForwardDynamics(
            config,
            (d if config.ego_action_warp_only else 2 * d) + speed_dim,
            global_warp=config.ego_decoder_warp,
            warp_dim=d + speed_dim if config.ego_action_warp_only else 0,
        )

    # Everything stage 1 trains (frozen for stage 2; reusable by another run's stage 2).
    STAGE1_MODULES = (
        "ego_conditioning",
        "environment_encoder",
        "environment_head",
        "environment_codebook",
        "stage1_decoder",
        "environment_adversary",
    )

    def frozen_environment_modules(self) -> tuple[nn.Module, ...]:
        """Stage 1's modules but the codebook (frozen by its own flag, not by eval mode)."""
        return tuple(getattr(self, name) for name in self.STAGE1_MODULES if name != "environment_codebook")

    def train(self, mode: bool = True) -> LatentActionModel:
        """As nn.Module.train, but a frozen environment stays in eval mode (its
        batch-norm statistics are part of the frozen codebook's input)."""
        super().train(mode)
        if self.environment_codebook.frozen:
            for module in self.frozen_environment_modules():
                module.eval()
        return self

    def freeze_environment(self) -> None:
        """End of stage 1: the environment encoder and codebook become fixed."""
        self.environment_codebook.freeze()
        for module in self.frozen_environment_modules():
            module.eval()
            module.requires_grad_(False)

    def stage_parameters(self, stage: int) -> list[nn.Parameter]:
        if stage == 1:
            modules = self.frozen_environment_modules()
        else:
            modules = (self.ego_encoder, self.ego_head, self.stage2_decoder, self.speed_conditioning)
            if self.ego_speed_adversary is not None:
                modules = (*modules, self.ego_speed_adversary)
        return [p for module in modules for p in module.parameters()]

    def idm_input(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, H, W) frames -> (B, 3 (2T - 1), H, W): the frames and consecutive differences."""
        differences = self.config.difference_gain * (frames[:, 1:] - frames[:, :-1])
        return torch.cat([frames, differences], dim=1).flatten(1, 2)

    def moved_by_ego_motion(self, current: torch.Tensor, ego_motion: torch.Tensor) -> torch.Tensor:
        """Frame t as the camera sees it after the true ego motion (``ego_motion`` in the
        scaled units of the batch); frame t itself without ``environment_ego_warp``."""
        if self.ego_motion_warp is None:
            return current
        return self.ego_motion_warp(current, ego_motion * ego_motion.new_tensor(EGO_MOTION_SCALE))

    def encode_environment(
        self,
        frames: torch.Tensor,
        ego_motion: torch.Tensor,
        ego_state: torch.Tensor,
        moved: torch.Tensor | None = None,
    ) -> Quantized:
        """``moved``: frame t already moved by ``ego_motion`` (``moved_by_ego_motion``), if the caller has it."""
        conditioning = self.ego_conditioning(torch.cat([ego_motion, ego_state], dim=1))
        idm_input = self.idm_input(frames)
        if self.ego_motion_warp is not None:
            moved = self.moved_by_ego_motion(frames[:, -2], ego_motion) if moved is None else moved
            unexplained = frames[:, -1] - moved
            idm_input = torch.cat([idm_input, self.config.difference_gain * unexplained], dim=1)
        features = self.environment_encoder(idm_input)
        return self.environment_codebook(self.environment_head(torch.cat([features, conditioning], dim=1)))

    def encode_ego(self, frames: torch.Tensor, environment: torch.Tensor, ego_state: torch.Tensor) -> Quantized:
        parts = [self.ego_encoder(self.idm_input(frames)), environment]
        if self.motion_costs is not None:
            parts.append(self.motion_costs(frames[:, -2], frames[:, -1], ego_state[:, 0] * EGO_SPEED_SCALE_MPS))
        return self.ego_codebook(self.ego_head(torch.cat(parts, dim=1)))

    def forward(self, batch: dict, stage: int) -> LamOutput:
        """``batch["frames"]`` (B, history + 2, 3, H, W): t-1.., t, t+1; ``ego_motion`` (B, 3);
        ``ego_state`` (B, 5)."""
        frames = batch["frames"]
        current, target = frames[:, -2], frames[:, -1]
        moved = self.moved_by_ego_motion(current, batch["ego_motion"])  # frame t itself without the option
        environment = self.encode_environment(frames, batch["ego_motion"], batch["ego_state"], moved)
        if stage == 1:
            prediction = self.stage1_predict(current, environment.embedding, batch, moved)
            ego = None
            losses = {"environment_commitment": environment.commitment_loss}
            if self.config.environment_diversity_weight > 0.0:
                diversity = environment.diversity_loss(self.config.diversity_temperature)
                losses["environment_diversity"] = self.config.environment_diversity_weight * diversity
            if self.config.environment_adversary_weight > 0.0:
                truth = torch.cat([batch["ego_motion"], batch["ego_state"]], dim=1)
                adversary, weight = self.environment_adversary, self.config.environment_adversary_weight
                losses.update(self._adversary_losses("environment", adversary, weight, environment.latent, truth))
        else:
            environment_code = environment.embedding.detach()
            ego = self.encode_ego(frames, environment_code, batch["ego_state"])
            prediction = self.stage2_predict(current, environment_code, ego.embedding, batch)
            losses = {"ego_commitment": ego.commitment_loss}
            if self.ego_speed_adversary is not None:
                adversary, weight = self.ego_speed_adversary, self.config.ego_speed_adversary_weight
                speed = batch["ego_state"][:, :1]
                losses.update(self._adversary_losses("ego_speed", adversary, weight, ego.latent, speed))
        reconstruction = functional.mse_loss(prediction, target)
        fitted = reconstruction
        if stage == 1 and self.config.environment_residual_weight > 0.0:
            fitted = residual_weighted_mse(prediction, target, moved, self.config.environment_residual_weight)
        losses["reconstruction"] = self.config.reconstruction_weight * fitted
        return LamOutput(prediction, environment, ego, reconstruction, losses)

    def stage_norm(self, stage: int) -> nn.BatchNorm1d:
        """The batch-norm that feeds ``stage``'s codebook."""
        return (self.environment_head if stage == 1 else self.ego_head)[-1]

    @torch.no_grad()
    def recalibrate_norm(self, batches, stage: int) -> None:
        """Replace ``stage``'s batch-norm running statistics by their exact average over
        ``batches`` with the final weights ("precise BN"): the running averages of training
        lag behind weights that kept moving, and eval mode must see what training saw.
        Codebooks are not updated."""
        norm = self.stage_norm(stage)
        codebooks = (self.environment_codebook, self.ego_codebook)
        frozen = [codebook.frozen for codebook in codebooks]
        momentum, was_training = norm.momentum, self.training
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over the batches
        # train() first: it keeps modules of a *frozen environment* in eval mode, and the
        # codebooks are only paused here, not frozen for good.
        self.train()
        for codebook in codebooks:
            codebook.frozen = True
        try:
            for batch in batches:
                self(batch, stage)
        finally:
            norm.momentum = momentum
            for codebook, state in zip(codebooks, frozen, strict=True):
                codebook.frozen = state
            self.train(was_training)

    def stage1_predict(
        self, current: torch.Tensor, environment: torch.Tensor, batch: dict, moved: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Frame t+1 from the stage-1 decoder given the environment action and the true ego
        motion and state; with ``environment_ego_warp`` it starts from frame t moved by that
        motion (``moved``, if the caller has it), and also reads frame t itself with
        ``environment_decoder_unmoved``."""
        if moved is None:
            moved = self.moved_by_ego_motion(current, batch["ego_motion"])
        conditioning = self.ego_conditioning(torch.cat([batch["ego_motion"], batch["ego_state"]], dim=1))
        context = torch.cat([moved, current], dim=1) if self.config.environment_decoder_unmoved else moved
        return self.stage1_decoder(context, moved, torch.cat([environment, conditioning], dim=1))

    def stage2_predict(
        self, current: torch.Tensor, environment: torch.Tensor, ego: torch.Tensor, batch: dict
    ) -> torch.Tensor:
        """Frame t+1 from the stage-2 decoder given both actions (+ the ego speed at t): with
        ``ego_action_warp_only`` the ego action drives only the warp, the environment action
        (and speed) the residual; otherwise both condition everything."""
        speed = [self.speed_conditioning(batch["ego_state"][:, :1])] if self.config.ego_decoder_speed else []
        speed_mps = batch["ego_state"][:, 0] * EGO_SPEED_SCALE_MPS
        if self.config.ego_action_warp_only:
            return self.stage2_decoder(
                current, current, torch.cat([environment, *speed], dim=1), torch.cat([ego, *speed], dim=1), speed_mps
            )
        return self.stage2_decoder(current, current, torch.cat([environment, ego, *speed], dim=1), None, speed_mps)

    @staticmethod
    def _adversary_losses(
        name: str, adversary: nn.Module, weight: float, latent: torch.Tensor, target: torch.Tensor
    ) -> dict:
        """The adversary learns to read ``target`` from the (detached) latent; the encoder
        learns to make the adversary, frozen for that term, predict the batch mean: no
        information about ``target`` left, and a bounded objective (0 at best)."""
        adversary_loss = functional.mse_loss(adversary(latent.detach()), target)
        frozen = {key: value.detach() for key, value in adversary.named_parameters()}
        guess = torch.func.functional_call(adversary, frozen, (latent,))
        confusion = functional.mse_loss(guess, target.mean(dim=0, keepdim=True).expand_as(guess))
        return {f"{name}_adversary": weight * adversary_loss, f"{name}_confusion": weight * confusion}

    @torch.no_grad()
    def tokens(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(ego tokens (B,), environment tokens (B,)) for a batch of frame windows."""
        environment = self.encode_environment(batch["frames"], batch["ego_motion"], batch["ego_state"])
        ego = self.encode_ego(batch["frames"], environment.embedding, batch["ego_state"])
        return ego.tokens, environment.tokens
