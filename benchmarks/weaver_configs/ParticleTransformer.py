"""weaver-core network config of benchmarks/epoch_vs_weaver.py: ParT as in
jet-universe/particle_transformer networks/example_ParticleTransformer.py (the ParT paper's
configuration, what train_TopLandscape.sh trains), unchanged but for one thing: every keyword of
weaver's ParticleTransformer may be overridden with ``--network-option NAME VALUE`` (the
benchmark passes the hepjax config's hyperparameters this way, so both sides build the same
network; the parameter counts are asserted equal). weaver's default sequence trimming
(``trim=True``: SequenceTrimmer) is kept."""
import torch
from weaver.nn.model.ParticleTransformer import ParticleTransformer


class ParticleTransformerWrapper(torch.nn.Module):
    def __init__(self, **kwargs) -> None:
        super().__init__()
        self.mod = ParticleTransformer(**kwargs)

    @torch.jit.ignore
    def no_weight_decay(self):
        return {"mod.cls_token", }

    def forward(self, points, features, lorentz_vectors, mask):
        return self.mod(features, v=lorentz_vectors, mask=mask)


def get_model(data_config, **kwargs):
    cfg = dict(
        input_dim=len(data_config.input_dicts["pf_features"]),
        num_classes=len(data_config.label_value),
        # network configurations
        pair_input_dim=4,
        use_pre_activation_pair=False,
        embed_dims=[128, 512, 128],
        pair_embed_dims=[64, 64, 64],
        num_heads=8,
        num_layers=8,
        num_cls_layers=2,
        block_params=None,
        cls_block_params={"dropout": 0, "attn_dropout": 0, "activation_dropout": 0},
        fc_params=[],
        activation="gelu",
        # misc
        trim=True,
        for_inference=False,
    )
    cfg.update(**kwargs)
    model = ParticleTransformerWrapper(**cfg)
    model_info = {
        "input_names": list(data_config.input_names),
        "input_shapes": {k: ((1,) + s[1:]) for k, s in data_config.input_shapes.items()},
        "output_names": ["softmax"],
        "dynamic_axes": {**{k: {0: "N", 2: "n_" + k.split("_")[0]} for k in data_config.input_names},
                         **{"softmax": {0: "N"}}},
    }
    return model, model_info


def get_loss(data_config, **kwargs):
    return torch.nn.CrossEntropyLoss()
