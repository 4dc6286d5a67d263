"""``dlpipe tile``: a tomography volume into a chunked OME-Zarr pyramid."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dlpipe.cli._app import app, load


@app.command()
def tile(
    input_path: Annotated[
        str,
        typer.Argument(
            metavar="INPUT",
            help="Multi-page TIFF/BigTIFF, folder of 2D slices, raw binary, .npy, "
            "FILE.h5:/dataset, or a Zarr array.",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output store OUT.zarr.")],
    labels: Annotated[
        str | None,
        typer.Option(
            help="Label volume of the same shape (values 0-255), stored under labels/<name>."
        ),
    ] = None,
    chunks: Annotated[
        tuple[int, int, int] | None,
        typer.Option(help="Chunk shape Z Y X [config: tile.chunks].", show_default=False),
    ] = None,
    shards: Annotated[
        tuple[int, int, int] | None,
        typer.Option(
            help="Shard shape Z Y X, multiples of the chunks; Zarr v3 only [config: tile.shards].",
            show_default=False,
        ),
    ] = None,
    voxel_size: Annotated[
        tuple[float, float, float] | None,
        typer.Option(
            help="Voxel size Z Y X in --unit [config: tile.voxel_size].", show_default=False
        ),
    ] = None,
    unit: Annotated[
        str | None, typer.Option(help="Unit of the voxel size [config: tile.unit].")
    ] = None,
    levels: Annotated[
        int | None, typer.Option(help="Pyramid levels, ×2 each [config: tile.levels].")
    ] = None,
    codec: Annotated[str | None, typer.Option(help="zstd or blosc [config: tile.codec].")] = None,
    ngff: Annotated[
        str | None,
        typer.Option(help="0.5 (Zarr v3) or 0.4 (Zarr v2, older viewers) [config: tile.ngff]."),
    ] = None,
    split: Annotated[
        tuple[float, float, float] | None,
        typer.Option(
            help="Train, val, test shares of the z-slices [config: tile.split.fractions].",
            show_default=False,
        ),
    ] = None,
    gap: Annotated[
        int | None, typer.Option(help="Slices left out between subsets [config: tile.split.gap].")
    ] = None,
    memory_budget_mb: Annotated[
        int | None,
        typer.Option(
            help=(
                "Peak memory budget in MB; sets the slab thickness [config: tile.memory_budget_mb]."
            )
        ),
    ] = None,
    raw_shape: Annotated[
        tuple[int, int, int] | None,
        typer.Option(
            help="Shape Z Y X of a raw input (else from FILE.raw.info / YAML sidecar).",
            show_default=False,
        ),
    ] = None,
    raw_dtype: Annotated[
        str | None, typer.Option(help="dtype of a raw input (uint8, ...).")
    ] = None,
    byte_order: Annotated[str | None, typer.Option(help="little or big, for a raw input.")] = None,
    replace_nonfinite: Annotated[
        float | None,
        typer.Option(
            help="Replace NaN/inf in float data by this value (default: refuse) "
            "[config: tile.replace_nonfinite]."
        ),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option(help="Replace an existing store (a matching partial one is resumed).")
    ] = False,
    resume: Annotated[
        bool, typer.Option(help="Resume a partial store made with the same input and settings.")
    ] = True,
) -> None:
    """Write a volume (z, y, x) as a chunked OME-Zarr pyramid with statistics and a z-split.

    Reads slab by slab (memory bounded by --memory-budget-mb), writes levels 0, 1, ...
    (mean ×2 downsampling; labels by mode), stores min/max/mean/std/p0.1/p99.9 and a
    histogram, and train/val/test z-ranges in the root attributes under `dlpipe`
    (and OUT/split.json). OUT/.dlpipe_complete is written last; a killed run resumes.
    """
    from dlpipe.config import validate_config
    from dlpipe.tracking import stage_run
    from dlpipe.volumes import tile_volume

    config = load()
    section = config["tile"]
    for key, value in (
        ("chunks", chunks),
        ("shards", shards),
        ("voxel_size", voxel_size),
        ("unit", unit),
        ("levels", levels),
        ("codec", codec),
        ("ngff", ngff),
        ("memory_budget_mb", memory_budget_mb),
        ("replace_nonfinite", replace_nonfinite),
    ):
        if value is not None:
            section[key] = list(value) if isinstance(value, tuple) else value
    if split is not None:
        section["split"]["fractions"] = list(split)
    if gap is not None:
        section["split"]["gap"] = gap
    config = validate_config(config, source="command line")
    params = config["tile"]
    raw = {"shape": raw_shape, "dtype": raw_dtype, "byte_order": byte_order}
    with stage_run(
        config,
        "tile",
        dataset=Path(input_path.split(":")[0]).stem,
        params=params | {"input": input_path, "labels": labels},
    ) as run:
        summary = tile_volume(
            input_path,
            out,
            labels=labels,
            params=params,
            raw=raw,
            overwrite=overwrite,
            resume=resume,
        )
        st = summary["statistics"]
        z, y, x = summary["shape"]
        run.set_tags({"shape": f"{z}x{y}x{x}", "dtype": summary["dtype"]})
        run.log_metrics(
            {k: st[k] for k in ("min", "max", "mean", "std", "p0_1", "p99_9")}
            | {
                "voxels": z * y * x,
                "seconds": summary["seconds"],
                "mb_per_s": summary["mb_per_s"],
                "resumed_slabs": summary["resumed_slabs"],
            }
        )
        run.log_dict({"split": summary["split"], "statistics": st}, "tile_summary.json")
