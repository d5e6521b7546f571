"""bptt: recurrent neural networks trained with backpropagation through time, in NumPy.

    from bptt import RNNModel, gradcheck
    model = RNNModel(vocab_size=65, hidden_size=128)
    loss, grads = model.loss_and_grads(ids, targets)

Every gradient is an explicit formula (see docs/derivation.md) checked
against finite differences and PyTorch autograd.
"""

from bptt.analysis.gradcheck import gradcheck
from bptt.model import ModelConfig, RNNModel

__version__ = "0.1.0"
__all__ = ["ModelConfig", "RNNModel", "gradcheck", "__version__"]
