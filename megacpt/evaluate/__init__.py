"""Bits per byte: the cross-tokenizer yardstick of adaptation, computed the same way everywhere.

``windows`` cuts documents into the per-document rolling windows that the trainer's validation,
the Hugging Face evaluator (``hf``) and lm-evaluation-harness' ``loglikelihood_rolling`` all use,
so their numbers agree; ``lm_eval_tasks/`` holds megacpt's task files for lm-evaluation-harness.
"""
