"""A tokenizer built offline for the small teacher: byte-level BPE (as Qwen's) trained on
the prompts it will read, plus the special tokens Qwen2.5-VL's vision inputs need.

A real Qwen2.5-VL checkpoint brings its own tokenizer; this one exists so the small
teacher goes through exactly the same code (``from_pretrained(model_path)``)."""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from latentvla_ros.models.teacher.teacher_config import QWEN_SPECIAL_TOKENS


def build_offline_tokenizer(corpus: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Byte-level BPE over ``corpus`` (every byte stays encodable), Qwen's special tokens."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(QWEN_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>", padding_side="left"
    )
