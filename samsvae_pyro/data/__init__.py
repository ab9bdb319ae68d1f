"""Data layer: AnnData (in memory or on disk) -> perturbation design, splits, minibatches, simulations, datasets."""

from samsvae_pyro.data.batches import MinibatchLoader
from samsvae_pyro.data.datasets import (
    build_replogle_filtered,
    download_dataset,
    load_norman,
    load_replogle,
)
from samsvae_pyro.data.design import PerturbationData, build_perturbation_data
from samsvae_pyro.data.labels import PerturbationVocabulary, parse_label
from samsvae_pyro.data.ondisk import read_backed
from samsvae_pyro.data.simulate import simulate_counts, simulate_paper
from samsvae_pyro.data.splits import (
    bootstrap_cells,
    held_out_conditions_split,
    norman_data_efficiency_split,
    norman_ood_split,
    random_split,
)

__all__ = [
    "MinibatchLoader",
    "PerturbationData",
    "PerturbationVocabulary",
    "bootstrap_cells",
    "build_perturbation_data",
    "build_replogle_filtered",
    "download_dataset",
    "held_out_conditions_split",
    "load_norman",
    "load_replogle",
    "norman_data_efficiency_split",
    "norman_ood_split",
    "parse_label",
    "random_split",
    "read_backed",
    "simulate_counts",
    "simulate_paper",
]
