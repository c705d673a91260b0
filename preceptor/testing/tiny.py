"""Tiny models built locally from a config: a causal LM and a sentence encoder.

They train and generate in milliseconds, need no download and are used by the unit
tests (the real packaged models appear only in a few ``slow`` tests). Building is
deterministic (fixed seeds) and cached per folder.
"""

from __future__ import annotations

import json
from pathlib import Path

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

CORPUS = [
    "Clarithromycin is a strong CYP3A inhibitor and raises midazolam exposure.",
    "Rifampin is a strong CYP3A inducer and lowers the exposure of sensitive substrates.",
    "Warfarin inhibits vitamin K epoxide reductase; aspirin inhibits COX-1 and platelet aggregation.",
    "Atorvastatin inhibits HMG-CoA reductase and lowers cholesterol synthesis.",
    "Fluconazole is a moderate CYP2C9 inhibitor; warfarin is a CYP2C9 substrate.",
    "Explain the interaction between two drugs in one sentence.",
    "State the mechanism of action of the drug in one sentence.",
    "Normalize the product into JSON with name, class, targets, actions and enzyme roles.",
    "Create a concise clinical card for the drug.",
    "Answer A is better. Answer B is better. Tie. Both are bad.",
    "Sertraline blocks serotonin reuptake; combining it with tramadol raises serotonin syndrome risk.",
    "Amiodarone prolongs the QT interval and inhibits CYP2C9, CYP2D6 and CYP3A.",
    "Spironolactone antagonizes the mineralocorticoid receptor and can raise potassium.",
    "Omeprazole inhibits the proton pump and CYP2C19.",
    "Metformin lowers hepatic glucose production.",
    '{"name": "atorvastatin", "class": "statin", "targets": ["HMGCR"], "actions": ["inhibitor"]}',
    "The quick brown fox jumps over the lazy dog. 0 1 2 3 4 5 6 7 8 9",
    "a b c d e f g h i j k l m n o p q r s t u v w x y z",
]


def build_tokenizer(out: Path, vocab_size: int = 512, *, chat: bool = True):
    """A byte-level BPE tokenizer trained on a small domain corpus, with a ChatML template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS * 20, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<pad>", bos_token=None, unk_token=None,
        additional_special_tokens=["<|im_start|>", "<|endoftext|>"],
    )
    if chat:
        fast.chat_template = CHATML
    fast.padding_side = "left"
    fast.save_pretrained(out)
    return fast


def build_causal_lm(out: Path | str, *, hidden: int = 64, layers: int = 2, seed: int = 0) -> Path:
    """A 2-layer Qwen2 model (~70k parameters) with the tokenizer above, saved to ``out``."""
    out = Path(out)
    if (out / "config.json").exists() and (out / "tokenizer.json").exists():
        return out
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    out.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(out)
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tok), hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        tie_word_embeddings=True, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        bos_token_id=None,
    )
    model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(out)
    return out


def build_encoder(out: Path | str, *, hidden: int = 32, layers: int = 2, seed: int = 0) -> Path:
    """A tiny BERT encoder with a WordPiece vocabulary, saved in sentence-transformers format."""
    out = Path(out)
    if (out / "modules.json").exists():
        return out
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    out.mkdir(parents=True, exist_ok=True)
    words = sorted({w.strip(".,;:()\"'{}[]").lower() for line in CORPUS for w in line.split()} - {""})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [chr(c) for c in range(97, 123)] + [str(d) for d in range(10)] + list(".,;:!?()[]{}-'\"/%+=<>") + words
    vocab += ["##" + chr(c) for c in range(97, 123)] + ["##" + str(d) for d in range(10)]  # any lowercase word or code (vkorc1) has pieces
    hf_dir = out / "hf"
    hf_dir.mkdir(exist_ok=True)
    (hf_dir / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)) + "\n")
    tok = BertTokenizerFast(vocab=str(hf_dir / "vocab.txt"), do_lower_case=True)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=hidden * 2, max_position_embeddings=128)
    model = BertModel(config)
    model.save_pretrained(hf_dir)
    tok.save_pretrained(hf_dir)
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    st = SentenceTransformer(modules=[Transformer(str(hf_dir), max_seq_length=64), Pooling(hidden, "mean")], device="cpu")
    st.save(str(out))
    (out / "preceptor_tiny.json").write_text(json.dumps({"kind": "tiny-encoder", "hidden": hidden, "layers": layers}))
    return out
