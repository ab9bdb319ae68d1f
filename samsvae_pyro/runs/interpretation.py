"""The latent-structure report of a trained model: tables, plots and ``interpret.json`` in one directory.

:func:`interpret_run` writes (CSV unless said otherwise):

- ``effects``: posterior mean effects E_q[e_tk m_tk], perturbations x latent dims; ``inclusion``: q(m_tk = 1);
- ``similarity``: perturbation x perturbation similarity of the chosen ``source`` rows;
- ``clusters``: each perturbation's cluster, dendrogram position and group;
- ``dim_perturbations``, ``dim_genes``: per latent dim, the perturbations that switch it on and the genes it
  moves most; ``decoder_response``: latent dims x genes;
- with a grouping: ``grouping_score`` (AUROC and ARI against the permutation null) and ``grouping_null``;
- ``similarity_heatmap.png`` (and ``grouping_null.png`` with a grouping);
- ``interpret.json``: settings, the grouping scores, the file list.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, get_args

from anndata import AnnData

from samsvae_pyro._typing import SimilarityMetric, SimilaritySource
from samsvae_pyro.api import PerturbationModel
from samsvae_pyro.evaluate.latent_dims import genes_per_dim, perturbations_per_dim
from samsvae_pyro.interpret.grouping import group_labels, grouping_score, groups_from_pathways
from samsvae_pyro.interpret.plots import plot_grouping_null, plot_similarity_heatmap
from samsvae_pyro.interpret.similarity import METRICS, cluster_perturbations, perturbation_similarity
from samsvae_pyro.runs.layout import INTERPRET, TRUTH_KEY, write_csv, write_json
from samsvae_pyro.runs.render import jsonable

SOURCES = get_args(SimilaritySource)


def interpret_run(
    model: PerturbationModel,
    output_dir: str | os.PathLike,
    *,
    groups: Mapping[str, Iterable[str]] | None = None,
    source: SimilaritySource = "effects",
    metric: SimilarityMetric = "cosine",
    n_clusters: int | None = None,
    n_permutations: int = 1000,
    n_samples: int = 100,
    n_basal: int = 256,
    top_n: int = 10,
    plots: bool = True,
    seed: int = 0,
    log: Callable[[str], Any] | None = None,
) -> dict:
    """Latent-structure analysis of a trained model, written to ``output_dir``.

    Parameters
    ----------
    model
        A trained :class:`~samsvae_pyro.api.base.PerturbationModel` with per-perturbation effects.
    output_dir
        Directory of the output (created if needed; files of the same name are replaced).
    groups
        Group -> perturbations (e.g. :func:`~samsvae_pyro.interpret.groups_from_pathways`, or
        ``adata.uns["sams_truth"]["groups"]`` of a grouped simulation); ``None`` skips the score. Checked
        before any computation.
    source
        Rows compared: ``"effects"`` (posterior mean E * M) or ``"mask"`` (inclusion probabilities).
    metric
        ``"cosine"`` or ``"correlation"`` (see :func:`~samsvae_pyro.interpret.perturbation_similarity`).
    n_clusters
        Clusters of the table and of the ARI; default: the number of groups, or without groups a cut at
        average similarity 0.5.
    n_permutations
        Permutations of the grouping null.
    n_samples
        Posterior draws of (E, M).
    n_basal
        Basal states averaged by the decoder response.
    top_n
        Perturbations per latent dim, and twice as many genes per latent dim, in the ranked tables.
    plots
        Whether to write the PNG plots.
    seed
        Seed of the posterior draws, basal states and permutations.
    log
        Called with a line of progress before each step (e.g. ``print``).

    Returns
    -------
    The content of ``interpret.json``.
    """
    if source not in SOURCES:
        raise ValueError(f"source={source!r} is not supported; choose one of {list(SOURCES)}.")
    if metric not in METRICS:
        raise ValueError(f"metric={metric!r} is not supported; choose one of {list(METRICS)}.")
    say = log or (lambda _: None)
    labels = group_labels(groups, model.data.vocabulary.perturbations) if groups is not None else None
    n_clusters = n_clusters or (labels.nunique() if labels is not None else None)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    say(f"posterior effects E * M from {n_samples} draws of the guide")
    effects, inclusion = model.posterior_effects(n_samples, seed=seed)
    if source == "mask" and inclusion is None:
        raise ValueError(f"{type(model).__name__} has no mask; use source='effects'.")
    similarity = perturbation_similarity(effects if source == "effects" else inclusion, metric=metric)
    clusters = cluster_perturbations(similarity, n_clusters=n_clusters).assign(group=labels)
    score = None
    if labels is not None:
        say(f"grouping score against {n_permutations} label permutations")
        score = grouping_score(similarity, groups, n_clusters=n_clusters, n_permutations=n_permutations, seed=seed)
    say(f"decoder response to a unit shift of each of {effects.shape[1]} latent dims ({n_basal} basal states)")
    response = model.decoder_response(n_basal, seed=seed)
    tables = {"effects": effects, "inclusion": inclusion, "similarity": similarity, "clusters": clusters,
              "grouping_score": None if score is None else score.table,
              "grouping_null": None if score is None else score.null,
              "decoder_response": response, "dim_genes": genes_per_dim(response, top_n=2 * top_n),
              "dim_perturbations": perturbations_per_dim(effects, inclusion, top_n=top_n)}
    report = {"settings": {"source": source, "metric": metric, "n_clusters": n_clusters, "n_samples": n_samples,
                           "n_basal": n_basal, "n_permutations": n_permutations if score is not None else None,
                           "seed": seed},
              "n_perturbations": len(similarity), "n_clusters_found": int(clusters["cluster"].max()),
              "grouping": score.to_dict() if score is not None else {"skipped": "no grouping given"},
              "files": _write_tables(tables, out)}
    if plots:
        title = f"{metric} similarity of {'posterior effects E * M' if source == 'effects' else 'q(m = 1)'}"
        report["files"] += _write_plots(similarity, clusters, labels, score, out, title=title)
    report = jsonable(report)
    write_json(report, out / INTERPRET)
    return report


_INDEX_LABELS = {"grouping_score": "statistic", "grouping_null": "permutation", "decoder_response": "latent_dim",
                 "dim_genes": None, "dim_perturbations": None}  # default: "perturbation"


def _write_tables(tables: dict, out: Path) -> list[str]:
    names = []
    for name, table in tables.items():
        if table is not None:
            label = _INDEX_LABELS.get(name, "perturbation")
            write_csv(table, out / f"{name}.csv", index=label is not None, index_label=label)
            names.append(f"{name}.csv")
    return names


def _write_plots(similarity, clusters, labels, score, out: Path, *, title: str) -> list[str]:
    order = clusters["position"].to_numpy().argsort()
    paths = [plot_similarity_heatmap(similarity, out / "similarity_heatmap.png", order=order, groups=labels,
                                     title=title)]
    if score is not None:
        paths.append(plot_grouping_null(score, out / "grouping_null.png"))
    return [path.name for path in paths]


def choose_groups(model: PerturbationModel, adata: AnnData, *, groups: Mapping[str, Iterable[str]] | None = None,
                  pathways: bool = False, target_key: str | None = "gene",
                  log: Callable[[str], Any] | None = None) -> Mapping[str, Iterable[str]] | None:
    """The grouping to score: ``groups`` if given, else the AnnData's pathways (``pathways=True``), else the
    true groups of a grouped simulation, else ``None``."""
    say = log or (lambda _: None)
    if pathways:
        chosen = groups_from_pathways(adata, model.data.vocabulary.perturbations,
                                      perturbation_key=model.setup.get("perturbation_key"), target_key=target_key)
        say(f"pathways: {len(chosen)} of {len(adata.uns['pathways'])} have perturbed members")
        return chosen
    if groups is None and "groups" in adata.uns.get(TRUTH_KEY, {}):
        say(f"scoring against the simulation's true groups (uns['{TRUTH_KEY}']['groups'])")
        return adata.uns[TRUTH_KEY]["groups"]
    return groups
