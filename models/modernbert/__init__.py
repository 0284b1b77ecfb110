"""ModernBERT encoder (Warner et al., arXiv 2412.13663) with its masked-LM head and objective."""
from models.modernbert.config import ModernBertConfig
from models.modernbert.heads import ModernBertForSequenceClassification, ModernBertForTokenClassification
from models.modernbert.model import ModernBertEncoder, ModernBertForMaskedLM
from models.modernbert.objective import MaskedLmObjective, SequenceClassificationObjective

__all__ = ["ModernBertConfig", "ModernBertEncoder", "ModernBertForMaskedLM", "MaskedLmObjective",
           "ModernBertForSequenceClassification", "ModernBertForTokenClassification",
           "SequenceClassificationObjective"]
