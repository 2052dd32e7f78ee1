"""Training: LoRA / QLoRA / full SFT and continued pretraining on warehouse data.

    make train CONFIG=training/configs/demo/tiny_lora.yaml [NUM_GPUS=n] [ARGS="k=v ..."]

Modules: config (pydantic config), data (to_messages, tokenization with answer-only labels, packing),
recipes (how the model is prepared per method), trainer (the Trainer subclass and one stage of training),
launch (CLI: prepare data, run in-process or through `accelerate launch`, record), records (warehouse rows).
"""
