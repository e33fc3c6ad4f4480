"""The ``abc_char`` family: a character-level LSTM over ABC text (see ``family.py``)."""
