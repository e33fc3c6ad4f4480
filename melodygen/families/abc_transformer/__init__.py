"""The ``abc_transformer`` family: a Transformer that writes an ABC tune's body from its
meter, key, dance type and title (see ``family.py``)."""
