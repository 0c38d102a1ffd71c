from .latte import MODEL_NAMES, Latte, create_model

__all__ = ["Latte", "MODEL_NAMES", "create_model"]
