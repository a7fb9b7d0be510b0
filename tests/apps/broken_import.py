"""An app module that fails while it is imported: the gateway must exit
non-zero before listening, naming this module and printing the traceback."""

raise RuntimeError("broken_import fails on purpose at import time")

application = None  # never reached
