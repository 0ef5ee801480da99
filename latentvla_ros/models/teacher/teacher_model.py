"""The teacher VLM: Qwen2.5-VL reading the camera frame and a short prompt, writing the next
12 latent ego actions as 12 of its 16 added action tokens.

In the order of the method:

1. **Action tokens.** ``<latent_0>`` … ``<latent_15>`` are added to the tokenizer and the
   token embeddings resized (``resize_token_embeddings``), as AutoVLA adds its action
   tokens to Qwen2.5-VL.
2. **Input.** The frame goes through Qwen's own image processor (pillow path) into
   ``pixel_values`` and ``image_grid_thw``; the text holds one ``<|image_pad|>`` per merged
   2x2 patch (the processor's rule) and the prompt (driving command, ego speed).
   ``mm_token_type_ids`` marks the image tokens: without it Qwen2.5-VL silently skips its
   3-D rotary positions.
3. **Training.** Cross-entropy on the 12 action positions only (labels -100 elsewhere).
4. **Decoding** is constrained to the 16 action tokens at each of the 12 positions, so the
   output is always valid: :meth:`LatentActionTeacher.predict` returns the 12 x 16
   distributions, the greedy tokens and the fusion embeddings (:class:`TeacherOutput`).

One loading path: :meth:`LatentActionTeacher.from_pretrained` reads a local directory
(``local_files_only``, safetensors only) — a downloaded Qwen2.5-VL checkpoint or the small
teacher trained here, saved by :meth:`save_pretrained`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from transformers import (
    AutoTokenizer,
    LogitsProcessor,
    LogitsProcessorList,
    PreTrainedTokenizerFast,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
)
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from latentvla_ros.core.driving_command import DrivingCommand
from latentvla_ros.models.checkpoint import CheckpointError, file_sha256
from latentvla_ros.models.teacher.teacher_config import (
    ACTION_TOKEN_FORMAT,
    PATCH_SIZE,
    SPATIAL_MERGE_SIZE,
    TEMPORAL_PATCH_SIZE,
    TeacherConfig,
)
from latentvla_ros.models.teacher.teacher_tokenizer import build_offline_tokenizer

DESCRIPTION_FILE = "latentvla_teacher.json"
MODEL_KIND = "teacher_vlm"
WEIGHTS_FILE = "model.safetensors"
COMMAND_WORDS = {
    DrivingCommand.LEFT: "turn left",
    DrivingCommand.STRAIGHT: "go straight",
    DrivingCommand.RIGHT: "turn right",
    DrivingCommand.UNKNOWN: "follow the road",
}
PROMPT = "Drive. Command: {command}. Speed: {speed:.1f} m/s. Next {horizon} latent actions:"


def prompt_corpus(horizon: int) -> list[str]:
    """Every prompt shape the teacher reads (the offline tokenizer is trained on these)."""
    return [
        PROMPT.format(command=word, speed=speed, horizon=horizon)
        for word in COMMAND_WORDS.values()
        for speed in np.arange(0.0, 40.0, 0.7)
    ]


def small_qwen_config(config: TeacherConfig, tokenizer: PreTrainedTokenizerFast) -> Qwen2_5_VLConfig:
    """A Qwen2.5-VL of the sizes in ``config`` for ``tokenizer`` (before action tokens)."""
    ids = tokenizer.convert_tokens_to_ids
    text = {
        "vocab_size": len(tokenizer),
        "hidden_size": config.text_hidden_size,
        "intermediate_size": config.text_intermediate_size,
        "num_hidden_layers": config.text_layers,
        "num_attention_heads": config.text_heads,
        "num_key_value_heads": config.text_kv_heads,
        "max_position_embeddings": 1024,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": config.mrope_section()},
        "bos_token_id": ids("<|endoftext|>"),
        "eos_token_id": ids("<|im_end|>"),
        "pad_token_id": ids("<|endoftext|>"),
    }
    vision = {
        "depth": config.vision_layers,
        "hidden_size": config.vision_hidden_size,
        "intermediate_size": config.vision_intermediate_size,
        "num_heads": config.vision_heads,
        "out_hidden_size": config.text_hidden_size,  # the merger projects into the language width
        "patch_size": PATCH_SIZE,
        "spatial_merge_size": SPATIAL_MERGE_SIZE,
        "temporal_patch_size": TEMPORAL_PATCH_SIZE,
        "window_size": 2 * PATCH_SIZE * SPATIAL_MERGE_SIZE,
        "fullatt_block_indexes": [config.vision_layers - 1],
    }
    return Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
    )


def add_action_tokens(model: torch.nn.Module, tokenizer: PreTrainedTokenizerFast, codebook_size: int) -> list[int]:
    """Add ``<latent_k>`` tokens the tokenizer lacks and resize the embeddings; return their ids."""
    names = [ACTION_TOKEN_FORMAT.format(code) for code in range(codebook_size)]
    missing = [name for name in names if name not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_tokens(missing, special_tokens=True)
    if model.get_input_embeddings().weight.shape[0] < len(tokenizer):
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    return tokenizer.convert_tokens_to_ids(names)


@dataclass
class TeacherOutput:
    """What the teacher says about each frame of a batch (B frames, horizon T = 12, K = 16).

    - ``probabilities`` (B, T, K): per future step, the distribution over the action codes
      (softmax of the logits restricted to the action tokens; each row sums to 1);
    - ``tokens`` (B, T): the greedy action codes (each < K);
    - ``action_embeddings`` (B, T, H): last-layer hidden states at the T action positions;
    - ``visual_embedding`` (B, H): the mean last-layer hidden state over the image tokens
      (of every frame of the input).

    H is the language model's hidden size. The embeddings are what the planner's fusion
    attends to (keys and values).
    """

    probabilities: torch.Tensor
    tokens: torch.Tensor
    action_embeddings: torch.Tensor
    visual_embedding: torch.Tensor


class _OnlyActionTokens(LogitsProcessor):
    """Constrained decoding: every token but the action tokens gets probability 0."""

    def __init__(self, allowed: torch.Tensor) -> None:
        self.allowed = allowed

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        mask = torch.full_like(scores, float("-inf"))
        mask[:, self.allowed.to(scores.device)] = 0.0
        return scores + mask


class LatentActionTeacher:
    """Qwen2.5-VL + its tokenizer and image processor + the action-token bookkeeping."""

    def __init__(
        self,
        model: Qwen2_5_VLForConditionalGeneration,
        tokenizer: PreTrainedTokenizerFast,
        image_processor: Qwen2VLImageProcessorPil,
        config: TeacherConfig,
        description: dict | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.config = config
        self.description = description or {}
        self.tokenizer.padding_side = "left"  # every row's action tokens follow its prompt directly
        self.action_token_ids = torch.tensor(add_action_tokens(model, tokenizer, config.codebook_size))
        self.image_token_id = tokenizer.convert_tokens_to_ids("<|image_pad|>")

    # --- making and loading ------------------------------------------------------------

    @classmethod
    def build_small(cls, config: TeacherConfig | None = None, seed: int = 0) -> LatentActionTeacher:
        """The small teacher with random weights and a tokenizer built offline."""
        config = config or TeacherConfig()
        tokenizer = build_offline_tokenizer(prompt_corpus(config.horizon), config.tokenizer_vocab_size)
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration(small_qwen_config(config, tokenizer))
        pixels = config.image_height * config.image_width
        image_processor = Qwen2VLImageProcessorPil(
            min_pixels=pixels,
            max_pixels=pixels,
            patch_size=PATCH_SIZE,
            merge_size=SPATIAL_MERGE_SIZE,
            temporal_patch_size=TEMPORAL_PATCH_SIZE,
        )
        return cls(model.eval(), tokenizer, image_processor, config)

    @classmethod
    def from_pretrained(cls, model_path: Path, config: TeacherConfig | None = None) -> LatentActionTeacher:
        """A local directory: a Qwen2.5-VL checkpoint (action tokens are added if it has none)
        or a teacher saved by :meth:`save_pretrained` (its recorded sha256 is checked).
        Never downloads; never unpickles."""
        model_path = Path(model_path)
        if not (model_path / "config.json").is_file():
            raise CheckpointError(f"{model_path}: not a model directory (no config.json)")
        description = {}
        if (model_path / DESCRIPTION_FILE).is_file():
            description = json.loads((model_path / DESCRIPTION_FILE).read_text())
            if description.get("kind") != MODEL_KIND:
                raise CheckpointError(f"{model_path}: a '{description.get('kind')}' model, expected '{MODEL_KIND}'")
            _verify_weights(model_path, description)
            config = config or TeacherConfig.from_dict(description["config"])
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
            model_path, local_files_only=True, use_safetensors=True, dtype=torch.float32
        )
        tokenizer = AutoTokenizer.from_pretrained(model_path, local_files_only=True)
        image_processor = Qwen2VLImageProcessorPil.from_pretrained(model_path, local_files_only=True)
        return cls(model.eval(), tokenizer, image_processor, config or TeacherConfig(), description)

    def save_pretrained(self, directory: Path, version: str, extra: dict | None = None) -> Path:
        """Weights (safetensors), tokenizer, image processor, and ``latentvla_teacher.json``
        with the config, version and the weights' sha256."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(directory, safe_serialization=True)
        self.tokenizer.save_pretrained(directory)
        self.image_processor.save_pretrained(directory)
        weights = sorted(directory.glob("*.safetensors"))
        description = {
            "kind": MODEL_KIND,
            "version": version,
            "config": self.config.to_dict(),
            "sha256": {path.name: file_sha256(path) for path in weights},
            **(extra or {}),
        }
        (directory / DESCRIPTION_FILE).write_text(json.dumps(description, indent=2))
        self.description = description
        return directory

    # --- inputs ------------------------------------------------------------------------

    def encode(
        self,
        frames: np.ndarray,
        commands: np.ndarray,
        speeds_mps: np.ndarray,
        targets: np.ndarray | None = None,
    ) -> dict:
        """Model inputs for B frame histories (B, history, H, W, 3) uint8 RGB, oldest first (or
        (B, H, W, 3): the current frame only), commands (B,), speeds (B,); with ``targets``
        (B, T) action codes, the teacher-forced sequence and its ``labels``."""
        frames = np.asarray(frames)
        if frames.ndim == 4:
            frames = frames[:, None]
        if frames.shape[1] != self.config.history_frames:
            raise ValueError(f"frames: expected {self.config.history_frames} per input, got {frames.shape[1]}")
        size = (self.config.image_width, self.config.image_height)
        images = [cv2.resize(frame, size, interpolation=cv2.INTER_AREA) for history in frames for frame in history]
        vision = self.image_processor(images=images, return_tensors="pt")
        merge = self.image_processor.merge_size**2
        texts = []
        for row, (command, speed) in enumerate(zip(commands, speeds_mps, strict=True)):
            text = "<|im_start|>"
            for image in range(row * frames.shape[1], (row + 1) * frames.shape[1]):
                image_tokens = int(vision["image_grid_thw"][image].prod()) // merge
                text += "<|vision_start|>" + "<|image_pad|>" * image_tokens + "<|vision_end|>"
            prompt = PROMPT.format(
                command=COMMAND_WORDS[DrivingCommand(int(command))], speed=float(speed), horizon=self.config.horizon
            )
            texts.append(text + prompt)
        if targets is not None:
            names = np.vectorize(lambda code: ACTION_TOKEN_FORMAT.format(int(code)))(np.asarray(targets))
            texts = [text + "".join(row) for text, row in zip(texts, names, strict=True)]
        encoded = self.tokenizer(texts, return_tensors="pt", padding=True)
        batch = {
            "input_ids": encoded["input_ids"],
            "attention_mask": encoded["attention_mask"],
            "pixel_values": vision["pixel_values"],
            "image_grid_thw": vision["image_grid_thw"],
            "mm_token_type_ids": (encoded["input_ids"] == self.image_token_id).int(),
        }
        if targets is not None:
            labels = torch.full_like(encoded["input_ids"], -100)
            horizon = np.asarray(targets).shape[1]
            labels[:, -horizon:] = encoded["input_ids"][:, -horizon:]  # left padding: the actions end every row
            batch["labels"] = labels
        return batch

    # --- outputs -----------------------------------------------------------------------

    def action_logits(self, logits: torch.Tensor, horizon: int) -> torch.Tensor:
        """(B, T, K) logits of the action codes at the T positions that predict them, from a
        teacher-forced sequence ending in T action tokens."""
        return logits[:, -horizon - 1 : -1][:, :, self.action_token_ids.to(logits.device)]

    @torch.no_grad()
    def predict(self, frames: np.ndarray, commands: np.ndarray, speeds_mps: np.ndarray) -> TeacherOutput:
        """Greedy decoding constrained to the action tokens, in one pass: the distributions are
        the decoding steps' own logits and the embeddings their hidden states, so the sequence
        is not run through the model a second time (the image encoder and the prompt once)."""
        self.model.eval()
        device = next(self.model.parameters()).device
        horizon = self.config.horizon
        batch = {key: value.to(device) for key, value in self.encode(frames, commands, speeds_mps).items()}
        # One step past the horizon: its input is the last action token, whose hidden state
        # is that token's embedding (its own prediction is discarded).
        generated = self.model.generate(
            **batch,
            max_new_tokens=horizon + 1,
            min_new_tokens=horizon + 1,
            do_sample=False,
            logits_processor=LogitsProcessorList([_OnlyActionTokens(self.action_token_ids)]),
            pad_token_id=self.tokenizer.pad_token_id,
            return_dict_in_generate=True,
            output_logits=True,
            output_hidden_states=True,
        )
        sequence = generated.sequences[:, -horizon - 1 : -1]
        # Raw logits (before the constraint) of the steps that chose the T action tokens.
        logits = torch.stack(generated.logits[:horizon], dim=1)[:, :, self.action_token_ids.to(device)]
        probabilities = torch.softmax(logits.float(), dim=-1)
        prompt_hidden = generated.hidden_states[0][-1]
        image_mask = (batch["mm_token_type_ids"] == 1).unsqueeze(-1).to(prompt_hidden.dtype)
        visual = (prompt_hidden * image_mask).sum(dim=1) / image_mask.sum(dim=1).clamp(min=1.0)
        action_hidden = torch.cat([step[-1][:, -1:] for step in generated.hidden_states[1 : horizon + 1]], dim=1)
        lookup = torch.full((int(self.action_token_ids.max()) + 1,), -1, dtype=torch.long, device=device)
        lookup[self.action_token_ids.to(device)] = torch.arange(len(self.action_token_ids), device=device)
        return TeacherOutput(
            probabilities=probabilities.cpu(),
            tokens=lookup[sequence].cpu(),
            action_embeddings=action_hidden.float().cpu(),
            visual_embedding=visual.float().cpu(),
        )

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.text_config.hidden_size)

    @property
    def version(self) -> str:
        return str(self.description.get("version", ""))


def _verify_weights(model_path: Path, description: dict) -> None:
    for name, expected in (description.get("sha256") or {}).items():
        path = model_path / name
        found = file_sha256(path) if path.is_file() else "missing"
        if found != expected:
            raise CheckpointError(
                f"{path}: sha256 {found[:12]}… does not match {expected[:12]}… recorded in {DESCRIPTION_FILE} "
                f"(a changed or damaged file); refusing to load it"
            )
