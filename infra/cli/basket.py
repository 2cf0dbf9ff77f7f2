"""Command ``eval-basket``: offline evaluation of basket complements (no broker, no Redis)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import typer

from schemas.settings import get_settings


def eval_basket(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True,
                                help="Baskets: one per line (item names), or a basket-lines CSV."),
    fmt: str = typer.Option("auto", "--format", "-f", help="auto | baskets | basket-lines"),
    basket_m: int = typer.Option(1, "--basket-m", min=1, help="Fewest items shown per held-out basket."),
    max_basket_m: int = typer.Option(None, "--max-basket-m", min=1, help="Most items shown (default: --basket-m)."),
    n_samples: int = typer.Option(2000, "--n-samples", min=1, help="Baskets held out (latest when timed)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the hold-out draw and of the items shown."),
    k: int = typer.Option(10, "--k", min=1, max=100, help="Cut-off of Hit/Recall/MRR."),
    segment_mode: str = typer.Option("auto", "--segment-mode", help="auto | use_order | none"),
    profile: str = typer.Option(None, "--profile",
                                help="Basket profile (default: STREAMREC_BASKET_PROFILE, 'tuned': tune on these baskets)."),
    tune: bool = typer.Option(False, "--tune", help="Tune the policy on validation baskets carved from the "
                                                    "training ones (implied by --profile tuned)."),
    val_samples: int = typer.Option(None, "--val-samples", min=10,
                                     help="Validation baskets of the tuning (default: 500, on a catalog of at most "
                                          "5,000 items up to a quarter of the training baskets, at most 1,500)."),
    holdout: str = typer.Option("auto", "--holdout", help="auto (latest baskets when timed, else random) | random"),
    profiles_file: Path = typer.Option(None, "--profiles-file", help="Profile JSON (default: the shipped one)."),
    catalog: Path = typer.Option(None, "--catalog", exists=True, dir_okay=False,
                                 help="CSV item_id,title,category: categories instead of derived ones."),
    embeddings: bool = typer.Option(False, "--embeddings/--no-embeddings",
                                    help="Train LightFM for W_EMB, MMR and segment auto-detection."),
    out: Path = typer.Option(None, "--out", help="Also write the table as JSON here."),
) -> None:
    """Hold out baskets, show M items, predict the rest: streamrec vs co-occurrence vs popularity.

    By default streamrec is the policy tuned on these training baskets (as ``streamrec train``
    tunes the served one); ``--profile precision`` evaluates a shipped profile instead."""
    from schemas.basket_profiles import TUNED
    from trainer.basket_eval import EvalConfig, evaluate, markdown_table
    from trainer.data.baskets import BadBasketFile, read_any

    settings = get_settings()
    if segment_mode not in ("auto", "use_order", "none"):
        raise typer.BadParameter("--segment-mode must be auto, use_order or none")
    if holdout not in ("auto", "random"):
        raise typer.BadParameter("--holdout must be auto or random")
    profile = profile or settings.basket_profile
    tune = tune or profile == TUNED
    cfg = EvalConfig(basket_m=basket_m, max_basket_m=max_basket_m or basket_m, n_samples=n_samples, seed=seed, k=k,
                     segment_mode=segment_mode, profile=TUNED if tune else profile,
                     profiles_file=profiles_file or settings.basket_profiles_file, embeddings=embeddings,
                     tune=tune, val_samples=val_samples, holdout=holdout)
    categories = None
    if catalog:
        with open(catalog, newline="", encoding="utf-8") as fh:
            categories = {r["item_id"].strip(): (r.get("category") or "").strip() for r in csv.DictReader(fh)}
    try:
        baskets = read_any(file, fmt)
        table = evaluate(baskets, cfg, categories)
    except (BadBasketFile, ValueError, KeyError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{len(baskets)} baskets, {cfg.n_samples} held out, profile {cfg.profile}, segments {cfg.segment_mode}")
    tuning = table.attrs.get("tuning")
    if tuning:
        typer.echo(f"tuned on {tuning['n_val']} validation baskets ({tuning['holdout']}), "
                   f"{tuning['configurations']} configurations in {tuning['seconds']}s: "
                   f"{json.dumps(tuning['changed_from_cooccurrence'])}")
    typer.echo(markdown_table(table))
    if out:
        out.write_text(json.dumps({"table": table.to_dict(orient="records"), "tuning": tuning}, indent=2)
                       if tuning else json.dumps(table.to_dict(orient="records"), indent=2))


def register(app: typer.Typer) -> None:
    app.command("eval-basket")(eval_basket)
