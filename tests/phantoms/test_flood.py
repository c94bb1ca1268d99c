"""NEMA NU 1 flood uniformity: the cold-patch test vector, a flat flood, and agreement with an
independent plain-loop implementation on Poisson floods."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from phase4.phantoms.flood import FloodUniformity, rebin_factor
from phase4.phantoms.image import PhantomInputError
from phase4.phantoms.synthetic import ColdRegion, flood_array, write_flood

# NEMA NU 1-2018 IU = 100·(max − min)/(max + min): a flat flood with a 10% cold patch gives
# 100·(1 − 0.9)/(1 + 0.9) = 5.263% (DU too: the patch edge lies within 5 pixels).
EXPECTED_IU = 100 * 0.1 / 1.9


# --- an independent implementation: plain loops, nothing shared with phase4.phantoms.flood --------


def _cross(o: tuple[float, float], a: tuple[float, float], b: tuple[float, float]) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def plain_hull(points: list[tuple[int, int]]) -> list[tuple[float, float]]:
    """Andrew's monotone chain: the convex hull, counter-clockwise (positive cross products)."""
    lower: list[tuple[float, float]] = []
    upper: list[tuple[float, float]] = []
    for p in points:
        while len(lower) >= 2 and _cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    for p in reversed(points):
        while len(upper) >= 2 and _cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return lower[:-1] + upper[:-1]


def plain_centroid(poly: list[tuple[float, float]]) -> tuple[float, float]:
    area = cy = cx = 0.0
    for i in range(len(poly)):
        (y0, x0), (y1, x1) = poly[i], poly[(i + 1) % len(poly)]
        cross = y0 * x1 - y1 * x0
        area += cross / 2
        cy += (y0 + y1) * cross
        cx += (x0 + x1) * cross
    return cy / (6 * area), cx / (6 * area)


def plain_in(r: int, c: int, poly: list[tuple[float, float]]) -> bool:
    """Is >= 50% of pixel (r, c), the square [r, r+1] x [c, c+1], inside the convex polygon?
    The square is clipped against every edge (Sutherland-Hodgman), its area by shoelace."""
    square = [(r, c), (r + 1, c), (r + 1, c + 1), (r, c + 1)]
    shape: list[tuple[float, float]] = [(float(y), float(x)) for y, x in square]
    for i in range(len(poly)):
        a, b = poly[i], poly[(i + 1) % len(poly)]
        clipped = []
        for j in range(len(shape)):
            p, q = shape[j], shape[(j + 1) % len(shape)]
            sp, sq = _cross(a, b, p), _cross(a, b, q)
            if sp >= 0:
                clipped.append(p)
            if (sp > 0 > sq) or (sq > 0 > sp):
                t = sp / (sp - sq)
                clipped.append((p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1])))
        shape = clipped
        if len(shape) < 3:
            return False
    area = 0.0
    for j in range(len(shape)):
        (y0, x0), (y1, x1) = shape[j], shape[(j + 1) % len(shape)]
        area += (y0 * x1 - y1 * x0) / 2
    return abs(area) >= 0.5 - 1e-12


def plain_uniformity(image: list[list[float]], pixel_mm: float) -> dict[str, float]:
    """NEMA NU 1 as documented in docs/PHANTOMS.md, written with loops only."""
    # 1. rebin: integer factor closest to 6.4 mm within 4.48-8.32 mm, crop leftovers evenly
    best = None
    for f in range(1, 20):
        size = f * pixel_mm
        if 4.48 <= size <= 8.32 and (best is None or abs(size - 6.4) < abs(best * pixel_mm - 6.4)):
            best = f
    assert best is not None
    f = best
    rows, cols = len(image), len(image[0])
    ny, nx = rows // f, cols // f
    y0, x0 = (rows - ny * f) // 2, (cols - nx * f) // 2
    img = [[0.0] * nx for _ in range(ny)]
    for r in range(ny):
        for c in range(nx):
            total = 0.0
            for a in range(f):
                for b in range(f):
                    total += image[y0 + r * f + a][x0 + c * f + b]
            img[r][c] = total
    # 2. useful field: >= 0.5 x mean of the central half, largest 4-connected group, its box
    r_lo, r_hi, c_lo, c_hi = ny // 4, ny - ny // 4, nx // 4, nx - nx // 4
    centre_vals = [img[r][c] for r in range(r_lo, r_hi) for c in range(c_lo, c_hi)]
    level = sum(centre_vals) / len(centre_vals)
    above = [[img[r][c] >= 0.5 * level for c in range(nx)] for r in range(ny)]
    seen = [[False] * nx for _ in range(ny)]
    biggest: list[tuple[int, int]] = []
    for r in range(ny):
        for c in range(nx):
            if above[r][c] and not seen[r][c]:
                group, stack = [], [(r, c)]
                seen[r][c] = True
                while stack:
                    a, b = stack.pop()
                    group.append((a, b))
                    for da, db in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                        u, w = a + da, b + db
                        if 0 <= u < ny and 0 <= w < nx and above[u][w] and not seen[u][w]:
                            seen[u][w] = True
                            stack.append((u, w))
                if len(group) > len(biggest):
                    biggest = group
    # the field's shape: convex hull of the group's pixel corners; the CFOV is that shape
    # scaled by 0.75 about its area centroid; a pixel is in a shape if >= 50% of it is inside
    corners = {(r + a, c + b) for r, c in biggest for a in (0, 1) for b in (0, 1)}
    hull = plain_hull(sorted(corners))
    mid_r, mid_c = plain_centroid(hull)
    cfov_hull = [(mid_r + 0.75 * (y - mid_r), mid_c + 0.75 * (x - mid_c)) for y, x in hull]
    ufov0 = {(r, c) for r in range(ny) for c in range(nx) if plain_in(r, c, hull)}
    cfov0 = {(r, c) for (r, c) in ufov0 if plain_in(r, c, cfov_hull)}
    cfov_mean = sum(img[r][c] for r, c in cfov0) / len(cfov0)
    # 3. edge rules: (a) edge pixels < 75% of the CFOV mean -> 0; (b) zero 4-neighbour -> 0
    kept = set()
    for r, c in ufov0:
        edge = any((r + dr, c + dc) not in ufov0 for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)))
        if not (edge and img[r][c] < 0.75 * cfov_mean) and img[r][c] > 0:
            kept.add((r, c))
    ufov = {
        (r, c)
        for r, c in kept
        if all((r + dr, c + dc) in kept for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)))
    }
    cfov = {p for p in cfov0 if p in ufov}
    # 4. 9-point smoothing over the analysed pixels only (weights renormalised)
    weights = {(-1, -1): 1, (-1, 0): 2, (-1, 1): 1, (0, -1): 2, (0, 0): 4, (0, 1): 2}
    weights.update({(1, -1): 1, (1, 0): 2, (1, 1): 1})
    smooth = {}
    for r, c in ufov:
        num = den = 0.0
        for (dr, dc), wt in weights.items():
            if (r + dr, c + dc) in ufov:
                num += wt * img[r + dr][c + dc]
                den += wt
        smooth[(r, c)] = num / den

    def iu(vals: list[float]) -> float:
        return 100 * (max(vals) - min(vals)) / (max(vals) + min(vals))

    def du(field: set[tuple[int, int]]) -> tuple[float, float]:
        rows_du = cols_du = 0.0
        for r in range(ny):
            for c in range(nx - 4):
                window = [(r, c + k) for k in range(5)]
                if all(p in field for p in window):
                    rows_du = max(rows_du, iu([smooth[p] for p in window]))
        for c in range(nx):
            for r in range(ny - 4):
                window = [(r + k, c) for k in range(5)]
                if all(p in field for p in window):
                    cols_du = max(cols_du, iu([smooth[p] for p in window]))
        return rows_du, cols_du

    u_rows, u_cols = du(ufov)
    c_rows, c_cols = du(cfov)
    return {
        "iu_ufov_pct": iu([smooth[p] for p in ufov]),
        "iu_cfov_pct": iu([smooth[p] for p in cfov]),
        "du_ufov_rows_pct": u_rows,
        "du_ufov_columns_pct": u_cols,
        "du_cfov_rows_pct": c_rows,
        "du_cfov_columns_pct": c_cols,
    }


# --- the reference test vector ---------------------------------------------------------------


def test_cold_patch_gives_the_reference_iu_and_du() -> None:
    # 3.2 mm pixels rebin ×2 to 6.4 mm; a 48 mm square patch is 7-8 rebinned pixels wide, so
    # its centre keeps the full 10% depth after the 3×3 smoothing.
    frames = flood_array(
        cold=[ColdRegion(x_mm=30.0, y_mm=-20.0, size_mm=48.0, depth=0.1)], noise=False
    )
    head = FloodUniformity.from_array(frames, 3.2).analyze().results_data().heads[0]
    for value in (head.iu_ufov_pct, head.du_ufov_pct, head.iu_cfov_pct, head.du_cfov_pct):
        assert value == pytest.approx(EXPECTED_IU, abs=0.01)
    # both directions see the patch edge
    assert head.du_ufov_rows_pct == pytest.approx(EXPECTED_IU, abs=0.01)
    assert head.du_ufov_columns_pct == pytest.approx(EXPECTED_IU, abs=0.01)


def test_flat_flood_is_perfectly_uniform() -> None:
    flood = FloodUniformity.from_array(flood_array(noise=False), 3.2).analyze()
    head = flood.results_data().heads[0]
    assert (head.iu_ufov_pct, head.du_ufov_pct, head.iu_cfov_pct, head.du_cfov_pct) == (0, 0, 0, 0)
    # The 480 × 360 mm field covers 150 × 112 native pixels: 56 whole rebinned rows, and 75
    # whole rebinned columns plus a half-covered one at each side (50% counts, inside the
    # >= 50% field threshold): the field found is 56 × 76 pixels.
    assert head.ufov_shape_pixels == (56, 76)
    # Edge rule (a) zeroes the two half-covered columns (< 75% of the CFOV mean); rule (b)
    # then strips the ring next to any zero: (56 - 2) × (76 - 2 - 2) pixels are analysed.
    assert head.ufov_pixels == 54 * 72


def test_patch_outside_the_cfov_only_shows_in_the_ufov() -> None:
    frames = flood_array(
        cold=[ColdRegion(x_mm=208.0, y_mm=0.0, size_mm=26.0, depth=0.1)], noise=False
    )
    head = FloodUniformity.from_array(frames, 3.2).analyze().results_data().heads[0]
    assert head.iu_ufov_pct == pytest.approx(EXPECTED_IU, abs=0.01)
    assert head.iu_cfov_pct == 0.0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_poisson_floods_agree_with_the_plain_implementation(seed: int) -> None:
    cold = [ColdRegion(x_mm=-60.0, y_mm=40.0, size_mm=76.0, depth=0.06, shape="pmt")]
    frames = flood_array(
        shape=(150, 150),
        pixel_mm=2.2,
        field_mm=(300.0, 240.0),
        counts_per_pixel=1100,
        cold=cold if seed != 2 else (),
        seed=seed,
    )
    ours = FloodUniformity.from_array(frames, 2.2).analyze().results_data()
    assert ours.rebin_factor == (3, 3)
    head = ours.heads[0]
    plain = plain_uniformity(frames[0].tolist(), 2.2)
    for name, value in plain.items():
        assert getattr(head, name) == pytest.approx(value, rel=1e-9, abs=1e-9), name
    assert head.du_ufov_pct == max(plain["du_ufov_rows_pct"], plain["du_ufov_columns_pct"])
    # ~9 900 counts per rebinned pixel: noise alone gives a few percent IU, not more
    assert 1.0 < head.iu_ufov_pct < 8.0


def test_multi_head_dicom_gives_one_result_per_head(tmp_path) -> None:
    series = write_flood(
        tmp_path / "flood.dcm",
        heads=2,
        counts_per_pixel=2600,
        cold=[ColdRegion(x_mm=0.0, y_mm=0.0, size_mm=76.0, depth=0.25, shape="pmt", head=2)],
        seed=5,
    )
    flood = FloodUniformity.from_dicom(series.paths[0]).analyze()
    data = flood.results_data()
    assert [h.head for h in data.heads] == [1, 2]
    h1, h2 = data.heads
    assert h1.iu_ufov_pct < 5.0 < h2.iu_ufov_pct  # the detuned PMT is seen on head 2 only
    assert h2.iu_cfov_pct > 10.0
    metrics = flood.metrics()
    assert metrics["iu_ufov_pct"] == h2.iu_ufov_pct
    assert metrics["iu_ufov_pct_h1"] == h1.iu_ufov_pct
    verdicts = flood.verdicts()
    assert verdicts["iu_ufov_pct_h1"] == "pass"
    assert verdicts["iu_ufov_pct_h2"] == "tolerance"
    # matches the same array analysed directly (DICOM round trip is lossless for counts)
    frames = flood_array(
        heads=2,
        counts_per_pixel=2600,
        seed=5,
        cold=[ColdRegion(x_mm=0.0, y_mm=0.0, size_mm=76.0, depth=0.25, shape="pmt", head=2)],
    )
    direct = FloodUniformity.from_array(frames, 3.2).analyze().results_data()
    assert direct.heads[1].iu_ufov_pct == pytest.approx(h2.iu_ufov_pct, rel=1e-12)
    assert series.truth["heads"][1]["expected_iu_pct"] == pytest.approx(100 * 0.25 / 1.75)
    json.dumps(data.to_dict())  # JSON-safe
    assert "Head 2" in flood.results()
    assert len(flood.figure().data) == 2


def test_low_counts_are_reported_and_warned() -> None:
    low = FloodUniformity.from_array(flood_array(counts_per_pixel=500, seed=1), 3.2).analyze()
    head = low.results_data().heads[0]
    assert head.centre_pixel_counts == pytest.approx(2000, rel=0.15)
    assert not head.counts_adequate
    assert "10000" in low.results_data().warnings[0]
    high = FloodUniformity.from_array(flood_array(counts_per_pixel=2600, seed=1), 3.2).analyze()
    assert high.results_data().heads[0].counts_adequate
    assert high.results_data().warnings == ()


def test_given_ufov_overrides_the_found_field() -> None:
    frames = flood_array(noise=False)
    head = (
        FloodUniformity.from_array(frames, 3.2)
        .analyze(ufov_mm=(320.0, 256.0))
        .results_data()
        .heads[0]
    )
    assert head.ufov_shape_pixels == (40, 50)
    with pytest.raises(PhantomInputError, match="larger than the image"):
        FloodUniformity.from_array(frames, 3.2).analyze(ufov_mm=(900.0, 100.0))


@pytest.mark.parametrize(
    ("pixel", "factor"), [(6.4, 1), (3.2, 2), (2.2, 3), (1.6, 4), (4.0, 2), (8.0, 1), (0.8, 8)]
)
def test_rebin_factor_brings_pixels_into_range(pixel: float, factor: int) -> None:
    assert rebin_factor(pixel) == factor
    assert 4.48 <= factor * pixel <= 8.32


@pytest.mark.parametrize("pixel", [12.0, 4.2, 9.0])
def test_impossible_pixel_sizes_are_named(pixel: float) -> None:
    with pytest.raises(PhantomInputError, match=f"pixel spacing {pixel:g} mm cannot be rebinned"):
        FloodUniformity.from_array(np.ones((64, 64)), pixel).analyze()


def test_bad_inputs_are_refused(tmp_path) -> None:
    with pytest.raises(PhantomInputError, match="2-D frames"):
        FloodUniformity.from_array(np.ones(10), 3.2)
    with pytest.raises(PhantomInputError, match="not negative"):
        FloodUniformity.from_array(-np.ones((64, 64)), 3.2)
    with pytest.raises(PhantomInputError, match="no such file"):
        FloodUniformity.from_dicom(tmp_path / "nothing.dcm")
    with pytest.raises(RuntimeError, match="analyze"):
        FloodUniformity.from_array(np.ones((64, 64)), 3.2).results_data()
    assert math.isclose(EXPECTED_IU, 5.2631578947, rel_tol=1e-9)


# --- circular detector fields (the UFOV follows the field's shape) --------------------------


@pytest.mark.parametrize(
    ("pixel_mm", "diameter_mm"), [(2.2, 400.0), (3.2, 380.0), (4.0, 411.0), (2.2, 300.0)]
)
def test_flat_circular_field_is_perfectly_uniform(pixel_mm: float, diameter_mm: float) -> None:
    n = int(480 / pixel_mm)
    frames = flood_array(
        shape=(n, n), pixel_mm=pixel_mm, field_diameter_mm=diameter_mm, noise=False
    )
    flood = FloodUniformity.from_array(frames, pixel_mm).analyze()
    head = flood.results_data().heads[0]
    # The UFOV is the circle, not its bounding rectangle: with the rectangle, edge rule (a)
    # never sees the partly covered pixels around the circle (IU 2.3% at 2.2 mm pixels).
    assert (head.iu_ufov_pct, head.du_ufov_pct, head.iu_cfov_pct, head.du_cfov_pct) == (0, 0, 0, 0)
    # The CFOV is the concentric circle of 0.75 x the diameter, not a square reaching past it.
    rebinned_mm = flood.results_data().pixel_mm[0]
    cfov = flood._maps[0].cfov
    rr, cc = np.nonzero(cfov)
    centre = (cfov.shape[0] / 2, cfov.shape[1] / 2)
    radius_px = np.hypot(rr + 0.5 - centre[0], cc + 0.5 - centre[1])
    assert radius_px.max() <= 0.75 * diameter_mm / 2 / rebinned_mm + 0.75
    assert head.cfov_pixels == pytest.approx(
        math.pi * (0.75 * diameter_mm / 2 / rebinned_mm) ** 2, rel=0.06
    )


@pytest.mark.parametrize("seed", [4, 5])
def test_poisson_circular_floods_agree_with_the_plain_implementation(seed: int) -> None:
    cold = [ColdRegion(x_mm=50.0, y_mm=30.0, size_mm=60.0, depth=0.08, shape="pmt")]
    frames = flood_array(
        shape=(140, 140),
        pixel_mm=2.2,
        field_diameter_mm=280.0,
        counts_per_pixel=1100,
        cold=cold if seed == 5 else (),
        seed=seed,
    )
    head = FloodUniformity.from_array(frames, 2.2).analyze().results_data().heads[0]
    plain = plain_uniformity(frames[0].tolist(), 2.2)
    for name, value in plain.items():
        assert getattr(head, name) == pytest.approx(value, rel=1e-9, abs=1e-9), name
    assert 1.0 < head.iu_ufov_pct < 8.0


def test_a_cold_defect_at_the_field_edge_stays_in_the_ufov() -> None:
    # A dead photomultiplier at the edge of a circular field cuts a notch below the field
    # threshold; the UFOV is the field's convex shape, so the notch is analysed, not cut out.
    cold = [ColdRegion(x_mm=180.0, y_mm=0.0, size_mm=40.0, depth=0.6)]
    frames = flood_array(
        shape=(150, 150), pixel_mm=3.2, field_diameter_mm=400.0, cold=cold, noise=False
    )
    flat = flood_array(shape=(150, 150), pixel_mm=3.2, field_diameter_mm=400.0, noise=False)
    notched = FloodUniformity.from_array(frames, 3.2).analyze().results_data().heads[0]
    whole = FloodUniformity.from_array(flat, 3.2).analyze().results_data().heads[0]
    assert notched.ufov_shape_pixels == whole.ufov_shape_pixels
    assert notched.iu_ufov_pct > 20.0
