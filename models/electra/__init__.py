"""ELECTRA (Clark et al., ICLR 2020): generator + discriminator pretraining by replaced-token detection, on the
classic BERT backbone (Hugging Face-compatible) or the ModernBERT backbone."""
from models.electra.config import ElectraConfig, max_predictions
from models.electra.model import (ElectraEmbeddings, ElectraForMaskedLM, ElectraForPreTraining,
                                  ElectraForSequenceClassification, ElectraPretrainingModel)
from models.electra.objective import ReplacedTokenDetectionObjective, SlotMaskedLmObjective, SlotMasking

__all__ = ["ElectraConfig", "max_predictions", "ElectraEmbeddings", "ElectraForMaskedLM", "ElectraForPreTraining",
           "ElectraForSequenceClassification", "ElectraPretrainingModel", "ReplacedTokenDetectionObjective",
           "SlotMaskedLmObjective", "SlotMasking"]
