"""Data: from a pairs file to token ids the trainer can use.

    pairs.py     read JSONL / JSON lists, recognise the row format (explicit, conversational, implicit
                 or HH transcript), validate every row, normalise it to prompt/chosen/rejected messages
    template.py  render with the chat template; the completion is what the full render adds after the
                 prompt render (boundary checked, repaired by two-part tokenization, never shifted);
                 truncation to the length limits
    prepare.py   both steps for one file, with a report (counts, token statistics) or a DataError
    preview.py   the same file as the app shows it: preview rows, one rendered pair, the token table
"""
