"""``dlpipe tile``: a tomography volume into a chunked OME-Zarr pyramid."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dlpipe.cli._app import app, configure, run_stage
from dlpipe.cli._options import config_option, out_option, overwrite_option

Triple = tuple[int, int, int] | None


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
    out: Annotated[Path, out_option("Output store OUT.zarr.")],
    labels: Annotated[
        str | None,
        typer.Option(
            help="Label volume of the same shape (values 0-255), stored under labels/<name>.",
            metavar="PATH",
        ),
    ] = None,
    instances: Annotated[
        str | None,
        typer.Option(
            help="Instance label volume of the same shape (object ids), stored as uint32 "
            "under labels/<stem> (a stem ending in 'instances', e.g. pore_instances) or "
            "labels/instances.",
            metavar="PATH",
        ),
    ] = None,
    chunks: Annotated[Triple, config_option("Chunk shape", "tile.chunks", metavar="Z Y X")] = None,
    shards: Annotated[
        Triple,
        config_option(
            "Shard shape, multiples of the chunks; Zarr v3 only", "tile.shards", metavar="Z Y X"
        ),
    ] = None,
    voxel_size: Annotated[
        tuple[float, float, float] | None,
        config_option("Voxel size in --unit", "tile.voxel_size", metavar="Z Y X"),
    ] = None,
    unit: Annotated[str | None, config_option("Unit of the voxel size", "tile.unit")] = None,
    levels: Annotated[int | None, config_option("Pyramid levels, ×2 each", "tile.levels")] = None,
    codec: Annotated[str | None, config_option("zstd or blosc", "tile.codec")] = None,
    ngff: Annotated[
        str | None, config_option("0.5 (Zarr v3) or 0.4 (Zarr v2, older viewers)", "tile.ngff")
    ] = None,
    split: Annotated[
        tuple[float, float, float] | None,
        config_option(
            "Train, val, test shares of the z-slices",
            "tile.split.fractions",
            metavar="TRAIN VAL TEST",
        ),
    ] = None,
    gap: Annotated[
        int | None, config_option("Slices left out between subsets", "tile.split.gap")
    ] = None,
    memory_budget_mb: Annotated[
        int | None,
        config_option("Peak memory budget in MB; sets the slab thickness", "tile.memory_budget_mb"),
    ] = None,
    raw_shape: Annotated[
        Triple,
        typer.Option(
            help="Shape Z Y X of a raw input (else from FILE.raw.info / YAML sidecar).",
            metavar="Z Y X",
            show_default=False,
        ),
    ] = None,
    raw_dtype: Annotated[
        str | None, typer.Option(help="dtype of a raw input (uint8, ...).")
    ] = None,
    byte_order: Annotated[str | None, typer.Option(help="little or big, for a raw input.")] = None,
    replace_nonfinite: Annotated[
        float | None,
        config_option(
            "Replace NaN/inf in float data by this value (default: refuse)",
            "tile.replace_nonfinite",
        ),
    ] = None,
    overwrite: Annotated[
        bool, overwrite_option("Replace an existing store (a matching partial one is resumed).")
    ] = False,
    resume: Annotated[
        bool, typer.Option(help="Resume a partial store made with the same input and settings.")
    ] = True,
) -> None:
    """Write a volume (z, y, x) as a chunked OME-Zarr pyramid with statistics and a z-split.

    Reads slab by slab (memory bounded by --memory-budget-mb) and writes OUT/0, OUT/1, ...
    (mean ×2 downsampling), OUT/labels/<name>/0, 1, ... with --labels (mode), the
    statistics (min/max/mean/std/p0.1/p99.9, histogram) and the train/val/test z-ranges in
    the root attributes under `dlpipe`, and OUT/split.json. The completion marker is written
    last; a killed run resumes. Ends with one line: shape, levels, throughput and OUT.
    """
    from dlpipe.volumes import tile_volume  # stage imports are deferred: `--help` stays fast

    options = {
        "chunks": chunks,
        "shards": shards,
        "voxel_size": voxel_size,
        "unit": unit,
        "levels": levels,
        "codec": codec,
        "ngff": ngff,
        "memory_budget_mb": memory_budget_mb,
        "replace_nonfinite": replace_nonfinite,
        "split.fractions": split,
        "split.gap": gap,
    }
    config = configure("tile", options)
    params = config["tile"]
    raw = {"shape": raw_shape, "dtype": raw_dtype, "byte_order": byte_order}
    run_stage(
        config,
        "tile",
        lambda run: tile_volume(
            input_path,
            out,
            labels=labels,
            instances=instances,
            params=params,
            raw=raw,
            overwrite=overwrite,
            resume=resume,
        ),
        dataset=out,
        kind="data",
        params=params | {"input": input_path, "labels": labels, "instances": instances},
    )
