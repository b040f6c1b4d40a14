"""Actor-critic networks, registered by name in `duo_ai.core.registry.MODELS`."""

from duo_ai.models.base import ModelOutput, build_model, model_config_from
from duo_ai.models.impala import ImpalaCoordPPOModel, ImpalaEncoder, ImpalaPPOModel
from duo_ai.models.minigrid import MiniGridCoordPPOModel, MiniGridPPOModel
from duo_ai.models.mlp import MlpPPOModel

__all__ = [
    "ImpalaCoordPPOModel",
    "ImpalaEncoder",
    "ImpalaPPOModel",
    "MiniGridCoordPPOModel",
    "MiniGridPPOModel",
    "MlpPPOModel",
    "ModelOutput",
    "build_model",
    "model_config_from",
]
