"""torchsight_export: write torchsight model directories from Hugging Face-style PyTorch models."""
from .export import (DEFAULT_EXAMPLE_TEXT, VERSION, ExportError, ExportVerificationError, export_model,
                     padded_batch)
from .sites import ensure_hook_op, graph_sites

__version__ = VERSION
__all__ = ["export_model", "ExportError", "ExportVerificationError", "padded_batch", "ensure_hook_op",
           "graph_sites", "DEFAULT_EXAMPLE_TEXT", "__version__"]

ensure_hook_op()  # so that torch.jit.load of an exported model.pt works after importing this package
