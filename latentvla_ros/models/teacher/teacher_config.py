"""Every size of the teacher VLM, in one place.

The teacher is Hugging Face transformers' ``Qwen2_5_VLForConditionalGeneration``.
Two ways to get one, through one loading path: a local Qwen2.5-VL checkpoint a team
downloaded itself (``model_path``; LatentVLA uses the 3B class, :data:`QWEN25_VL_3B`),
or the small configuration below, trained from scratch here with a tokenizer built
offline. Either way 16 action tokens ``<latent_0>`` … ``<latent_15>`` are added and the
model learns to write the next 12 latent ego actions after the camera frame and a
short prompt (driving command, ego speed).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

ACTION_TOKEN_FORMAT = "<latent_{}>"
# The special tokens Qwen2.5-VL's chat format and vision inputs rely on.
QWEN_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
PATCH_SIZE = 14
SPATIAL_MERGE_SIZE = 2  # the vision tower merges 2x2 patches into one language token
TEMPORAL_PATCH_SIZE = 2

# Qwen2.5-VL-3B-Instruct's published architecture (the paper's teacher size); used on the
# meta device in tests, and with a checkpoint directory a team provides.
QWEN25_VL_3B = {
    "text_config": {
        "vocab_size": 151936,
        "hidden_size": 2048,
        "intermediate_size": 11008,
        "num_hidden_layers": 36,
        "num_attention_heads": 16,
        "num_key_value_heads": 2,
        "max_position_embeddings": 128000,
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": True,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
    },
    "vision_config": {
        "depth": 32,
        "hidden_size": 1280,
        "intermediate_size": 3420,
        "num_heads": 16,
        "out_hidden_size": 2048,
        "patch_size": PATCH_SIZE,
        "spatial_merge_size": SPATIAL_MERGE_SIZE,
        "temporal_patch_size": TEMPORAL_PATCH_SIZE,
        "window_size": 112,
        "fullatt_block_indexes": [7, 15, 23, 31],
    },
    "tie_word_embeddings": True,
}


@dataclass(frozen=True)
class TeacherConfig:
    """The small teacher trained from scratch here, and what every teacher shares (inputs,
    horizon, codebook). Image sides must be multiples of 28 (patch 14, 2x2 merge)."""

    image_height: int = 56
    image_width: int = 112
    # Frames per input: the current one and those one latent step apart before it, each an
    # image in the prompt (a single frame shows where the ego is, not how it moves). Three
    # frames (as the LAM sees for the step ending at t) measured no better: 0.220 vs 0.231.
    history_frames: int = 2
    horizon: int = 12
    codebook_size: int = 16
    # The small Qwen2.5-VL (random init).
    text_hidden_size: int = 128
    text_layers: int = 4
    text_heads: int = 4
    text_kv_heads: int = 2
    text_intermediate_size: int = 384
    vision_hidden_size: int = 64
    vision_layers: int = 2
    vision_heads: int = 2
    vision_intermediate_size: int = 128
    tokenizer_vocab_size: int = 400  # byte-level BPE trained on the prompts, before special tokens

    def __post_init__(self) -> None:
        step = PATCH_SIZE * SPATIAL_MERGE_SIZE
        if self.image_height % step or self.image_width % step:
            raise ValueError(
                f"image_height/width must be multiples of {step}, got {self.image_height}x{self.image_width}"
            )
        if self.history_frames < 1:
            raise ValueError(f"history_frames must be >= 1, got {self.history_frames}")
        half_head = self.text_hidden_size // self.text_heads // 2
        if half_head < 3:
            raise ValueError("text_hidden_size / text_heads must be at least 6 (3-D rotary sections)")

    @property
    def image_tokens(self) -> int:
        """Language tokens one frame becomes."""
        step = PATCH_SIZE * SPATIAL_MERGE_SIZE
        return (self.image_height // step) * (self.image_width // step)

    def mrope_section(self) -> list[int]:
        """Temporal / height / width split of the rotary half-dimension (sums to head_dim / 2)."""
        half = self.text_hidden_size // self.text_heads // 2
        temporal = half // 4 or 1
        height = (half - temporal) // 2
        return [temporal, height, half - temporal - height]

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(values: dict) -> TeacherConfig:
        return TeacherConfig(**values)
