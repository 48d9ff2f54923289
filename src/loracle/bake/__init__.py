"""`loracle bake`: an instruction (what a system prompt would say) trained into a LoRA adapter.

The adapter makes the model answer, with no system prompt, as it answers with the instruction as its system
prompt: context distillation from the prompted model (teacher) to the unprompted one plus the adapter
(student), over the teacher's own replies to prompts the model writes from the instruction and to bundled
general prompts. The result is a plain PEFT folder that stacks with knowledge adapters.

`baker.bake` bakes; `config.BakeConfig` holds the options (importable without torch, as the CLI does).
"""
