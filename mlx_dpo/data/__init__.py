"""Data: from a pairs file to token ids the trainer can use.

    sources.py   where the data lives: a file (.jsonl/.json/.parquet/.csv/.tsv, gzipped), a dataset folder
                 in the hub layout, or a hub dataset id (local cache offline, the split's files downloaded online)
    schemas.py   recognise the column layout (UltraFeedback, Capybara-DPO, Orca, HH-RLHF, trl-lib,
                 instruction/input, or the key flags) and say the mapping in one line
    pairs.py     read the rows (JSONL streamed, JSON lists, Parquet), recognise the row format (explicit,
                 conversational, implicit or HH transcript), validate every row, normalise it to
                 prompt/chosen/rejected messages
    tables.py    CSV/TSV files: a header line, then rows (numbered by the line they start on)
    template.py  render with the chat template; the completion is what the full render adds after the
                 prompt render (boundary checked, repaired by two-part tokenization, never shifted);
                 truncation to the length limits
    prepare.py   both steps for one source, with a report (counts, problems, token statistics) or a
                 DataError; --skip-invalid leaves bad rows out and lists them (RUN_DIR/skipped.jsonl)
    cache.py     the tokenized pairs of large sources, cached by content + tokenizer + limits
    preview.py   the same file as the app shows it: preview rows, one rendered pair, the token table
    preferences.py  preference files written by people (chat picks and thumbs), appended under a lock
    unpaired.py  unpaired rows (prompt, completion, label) and KTO examples (not yet wired into training)
"""
