"""attention_book: the shared package of the executable book on attention and the Transformer.

Import modules, not names, so that every call shows where its piece lives::

    from attention_book import attention
    out, w = attention.scaled_dot_product_attention(q, k, v)
"""

__version__ = "0.1.0"
