"""Data mixtures: a YAML spec of tokenised datasets, built into Megatron-core blended GPT datasets.

- ``spec``: the spec (``DataMixture``, parsed by the run config's typed loader), the split and the
  checks of each dataset's files;
- ``budget``: a token budget's share and epochs per dataset (``megacpt mix``), without torch;
- ``build``: Megatron-core's blended train set and per-language validation sets.

A mixture lists ``.bin``/``.idx`` prefixes, each with a language tag and a **weight**. Weights are
*sampling shares*, never sizes: after normalisation over all entries, ``weight`` is the fraction of
training samples (and so of training tokens, every sample being ``seq_length`` tokens) drawn from
that dataset, however large or small the dataset is. A small dataset with a large weight is repeated
(several epochs); a large dataset with a small weight is only partly seen. ``token_budget_table``
shows both numbers for a given token budget before anyone trains.

The build is Megatron-core's own (``BlendedMegatronDatasetBuilder`` + ``GPTDataset`` +
``BlendedDataset``), so the shards and index caches are exactly what Megatron-LM reads and writes.
The training set blends every entry by weight; validation is one set per language tag (entries of a
language blended by their weights) so a run can report Korean, Japanese and English loss apart.

The sample order is a pure function of the mixture (names, languages, normalised weights), each
dataset's document and token counts, the seed, sequence length, split and sample counts; it does
not depend on where the data or the index caches live. ``GPTDatasets.fingerprint`` hashes exactly
those inputs, so a trainer that stores it with its checkpoints can refuse a resume whose blend (or
data) silently changed.
"""
