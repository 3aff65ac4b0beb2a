"""Linear probes on frozen conv1..conv5 features (docs/reference.md §3).

The protocol of the split-brain paper's ImageNet tables: the encoder is frozen in eval mode
(BatchNorm statistics too); each layer's activation is resized to about 9k values; a BatchNorm
without learned parameters (feature standardisation) and one Linear layer are trained on top
with SGD. Every probe reads the same frozen forward pass, so probing conv1..conv5 together
costs one encoder forward per batch, not five.

The probe checks its own protocol, as MoCo's ``main_lincls.py`` does: only head parameters are
trainable before training starts, the encoder is in eval mode at every step and receives no
gradient, and after training its parameters and buffers (BatchNorm statistics included) are
compared bitwise against a snapshot taken before.

The parts, each importing only the ones listed before it (and the errors defined here):

- :mod:`.report`: results dicts ``{layer: {"top1": %, "top5": %, ...}}`` as a markdown
  table, results.csv and results.json.
- :mod:`.data`: the labelled training and validation sets (uint8 crops, integer labels).
- :mod:`.encoder`: the frozen side: layers, input, resized features, :class:`FrozenEncoder`,
  loading a checkpoint's model, and the checks that the encoder stays unchanged.
- :mod:`.heads`: both solvers' trained heads in one linear form, saved as ``heads.pt`` so
  that ``tools/evaluate.py`` can classify new views (shift consistency) without refitting.
- :mod:`.solver_sgd`: the paper's solver: BatchNorm + Linear heads trained with SGD.
- :mod:`.solver_sklearn`: the small-data solver: cached features, scikit-learn logistic
  regression and k-NN.
- :mod:`.run`: a whole probe run (:func:`.run.probe_run`, what ``tools/probe.py`` calls):
  checks, the config's solver, the run folder and its results.

The two solver modules are named after the config's ``probe.solver`` values.
"""


class ProbeError(ValueError):
    """A request the probe cannot serve: no encoder to probe, an unknown layer, bad data."""


class ProtocolError(RuntimeError):
    """The frozen-encoder protocol was broken: the encoder trained, changed or left eval mode."""
