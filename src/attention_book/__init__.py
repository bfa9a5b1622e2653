"""attention_book: the package of the executable book on attention and the Transformer.

Import modules, not names: ``from attention_book import attention``."""

__version__ = "0.1.0"
