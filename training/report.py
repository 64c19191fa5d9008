"""The evaluation report: one self-contained HTML file (plots embedded as PNG data, no external assets).

Sections: what was evaluated, warnings, the off-policy estimates (table and plot), prediction quality (ROC and
precision-recall per action, calibration, lift by decile) and the model's feature importance.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from training.evaluate import LOGGING_POLICY, MODEL_POLICY, Evaluation
from training.off_policy import Estimate

MAX_CURVES = 12  # actions drawn on the ROC and precision-recall plots (those with the most rows)
PLOTS = ("ope", "roc", "precision_recall", "calibration", "lift", "feature_importance")


def write_report(evaluation: Evaluation, path: Path) -> Path:
    """Write the report to ``path`` (a .html file); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(evaluation), encoding="utf-8")
    return path


def render(e: Evaluation) -> str:
    """The report as one HTML document."""
    card = e.artifact.card
    parts = [
        f"<h1>Model {_h(e.artifact.version)}</h1>",
        "<div class='table'><table class='facts'>",
        _row("evaluated on", e.rows_label),
        _row("log", f"{e.log.source.rsplit('/', 1)[-1] or '(table)'}, {len(e.log):,} rows"),
        _row("outcome", f"{e.log.columns.outcome} ({'0/1' if e.binary else 'a value'})"),
        _row("propensities", "logged" if e.propensities_logged else "MISSING: estimates cannot be trusted"),
        _row("trained", f"{card.trained_at} on {card.log.get('rows', '?')} rows"),
        _row("servable", "yes" if e.artifact.servable else f"no: {card.details.get('servable_reason', '')}"),
        _row("actions", ", ".join(e.candidates)),
        "</table></div>",
    ]
    if e.warnings:
        parts.append("<div class='warnings'><h2>Warnings</h2><ul>")
        parts += [f"<li>{_h(w)}</li>" for w in e.warnings]
        parts.append("</ul></div>")

    parts.append("<h2>Off-policy estimates</h2>")
    parts.append(_ope_explanation(e))
    parts.append(_ope_table(e))
    parts.append(_figure("ope", "Estimated mean outcome of each policy, with 95% intervals", _plot_ope(e)))

    if e.live is not None:
        parts.append("<h2>Live traffic: champion and challenger</h2>")
        parts.append(_live_section(e))

    parts.append("<h2>Prediction quality</h2>")
    parts.append(_metrics_table(e))
    if e.binary:
        parts.append(_figure("roc", "ROC per action", _plot_curves(e, "roc")))
        parts.append(_figure("precision_recall", "Precision-recall per action", _plot_curves(e, "pr")))
    else:
        parts.append(
            "<p>ROC and precision-recall curves need a 0/1 outcome; this model predicts a value. "
            "Calibration and lift below apply to values too.</p>"
        )
    parts.append(_figure("calibration", "Calibration: predicted against observed, by decile", _plot_calibration(e)))
    parts.append(_figure("lift", "Lift by decile of the predicted outcome", _plot_lift(e)))
    parts.append(_figure("feature_importance", "Feature importance (total gain)", _plot_importance(e)))
    body = "\n".join(parts)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>nba evaluation: {_h(e.artifact.version)}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }}
.table {{ max-width: 100%; overflow-x: auto; margin: 1em 0; }}
table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; white-space: nowrap; }}
th {{ background: #f3f3f3; white-space: normal; vertical-align: bottom; }}
td:first-child, th:first-child {{ text-align: left; }}
.interval {{ display: block; color: #666; font-size: 0.85em; }}
.facts td {{ text-align: left; white-space: normal; overflow-wrap: anywhere; }}
.warnings {{ background: #fff4e5; border: 1px solid #f0a030; padding: 0.5em 1em; }}
tr.model td {{ font-weight: bold; }} figure {{ margin: 1.5em 0; }} img {{ max-width: 100%; height: auto; }}
</style></head><body>
{body}
</body></html>
"""


# ---------------------------------------------------------------------------------------------------------
# Tables and text


def _ope_explanation(e: Evaluation) -> str:
    trust = (
        "The propensities come from the log, so the estimates are honest within their intervals."
        if e.trusted
        else "<strong>The log has no propensities: these numbers assume uniform logging and cannot be trusted.</strong>"
    )
    return (
        f"<p>Mean outcome each policy would have had on {_h(e.rows_label)}. "
        f"<em>logging</em> is the policy that wrote the log (its observed mean); <em>model</em> chooses each "
        f"row's action with the highest predicted outcome; <em>action:X</em> always chooses X. IPS weights are "
        f"clipped at {e.max_weight:g}; SNIPS is self-normalised; DR uses the model as its reward model. "
        f"Intervals: 95%, normal approximation. {trust}</p>"
    )


def _ope_table(e: Evaluation) -> str:
    rows = [
        "<div class='table'><table><tr><th>policy</th><th>IPS</th><th>SNIPS</th><th>DR</th>"
        "<th>rows chosen alike</th><th>effective sample size</th><th>clipped rows</th></tr>"
    ]
    for p in e.policies:
        css = " class='model'" if p.policy == MODEL_POLICY else ""
        rows.append(
            f"<tr{css}><td>{_h(p.policy)}</td><td>{_est_cell(p.ips)}</td><td>{_est_cell(p.snips)}</td>"
            f"<td>{_est_cell(p.dr)}</td>"
            f"<td>{p.supported_rows:,}</td><td>{p.effective_sample_size:,.0f}</td><td>{p.clipped_rows:,}</td></tr>"
        )
    rows.append("</table></div>")
    if e.model_minus_logging:
        d = e.model_minus_logging
        verdict = _verdict(d["dr"])
        rows.append(f"<p><strong>model minus logging</strong>: IPS {_est(d['ips'])}, DR {_est(d['dr'])}. {verdict}</p>")
    return "\n".join(rows)


def _live_section(e: Evaluation) -> str:
    live = e.live
    assert live is not None
    rows = [
        "<p>Each decision's first action, by the model that decided it. The arms are customer groups drawn by a "
        "stable hash of the customer id, so their observed outcomes compare directly.</p>",
        "<div class='table'><table><tr><th>arm</th><th>models</th><th>decisions</th>"
        "<th>observed mean outcome</th></tr>",
    ]
    for arm in live.arms:
        rows.append(
            f"<tr><td>{_h(arm.arm)}</td><td>{_h(', '.join(arm.model_versions))}</td><td>{arm.decisions:,}</td>"
            f"<td>{_est_cell(arm.mean_outcome)}</td></tr>"
        )
    rows.append("</table></div>")
    if live.challenger_minus_champion is not None:
        diff = live.challenger_minus_champion
        verdict = (
            "The challenger does better (the interval is above zero)."
            if diff.low > 0
            else "The challenger does worse (the interval is below zero)."
            if diff.high < 0
            else "No significant difference yet (the interval contains zero)."
        )
        rows.append(f"<p><strong>challenger minus champion</strong>: {_est(diff)}. {verdict}</p>")
    if live.shadow_decisions:
        agreement = f"{live.shadow_agreement:.1%}" if live.shadow_agreement is not None else "?"
        rows.append(
            f"<p>Shadow {_h(', '.join(live.shadow_model_versions))} scored {live.shadow_decisions:,} decisions "
            f"and agreed with the deciding model on {agreement} of them.</p>"
        )
        if live.shadow is not None:
            rows.append(
                f"<p>Its estimated mean outcome from the logged propensities: IPS {_est(live.shadow.ips)}, "
                f"SNIPS {_est(live.shadow.snips)} (effective sample size "
                f"{live.shadow.effective_sample_size:,.0f}).</p>"
            )
    return "\n".join(rows)


def _verdict(diff: Estimate) -> str:
    if math.isnan(diff.estimate):
        return ""
    if diff.low > 0:
        return "The model's policy is better than the logging policy (the DR interval is above zero)."
    if diff.high < 0:
        return "The model's policy is worse than the logging policy (the DR interval is below zero)."
    return "No significant difference from the logging policy (the DR interval contains zero)."


def _metrics_table(e: Evaluation) -> str:
    m = e.metrics
    names = ["auc", "logloss", "mean_outcome", "mean_predicted"] if e.binary else ["rmse", "mae", "mean_outcome"]
    cells = "".join(f"<tr><td>{n}</td><td>{_num(m.get(n))}</td></tr>" for n in names)
    out = f"<div class='table'><table><tr><th>metric</th><th>value</th></tr>{cells}</table></div>"
    if e.binary and m.get("auc_by_action"):
        counts = {a: int((e.actions == a).sum()) for a in m["auc_by_action"]}
        lines = "".join(
            f"<tr><td>{_h(a)}</td><td>{counts[a]:,}</td><td>{_num(v)}</td></tr>" for a, v in m["auc_by_action"].items()
        )
        out += f"<div class='table'><table><tr><th>action</th><th>rows</th><th>AUC</th></tr>{lines}</table></div>"
    return out


def _row(name: str, value: str) -> str:
    return f"<tr><td>{_h(name)}</td><td>{_h(value)}</td></tr>"


def _est(estimate: Estimate) -> str:
    if math.isnan(estimate.estimate):
        return "n/a"
    return f"{estimate.estimate:.4g} [{estimate.low:.4g}, {estimate.high:.4g}]"


def _est_cell(estimate: Estimate) -> str:
    """An estimate in a table: its interval on a line of its own, so the columns stay narrow enough for a laptop."""
    if math.isnan(estimate.estimate):
        return "n/a"
    return f"{estimate.estimate:.4g}<span class='interval'>[{estimate.low:.4g}, {estimate.high:.4g}]</span>"


def _num(value: Any) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _h(text: object) -> str:
    return html.escape(str(text))


def _figure(name: str, caption: str, png: bytes) -> str:
    data = base64.b64encode(png).decode()
    return (
        f"<figure id='{name}'><img alt='{_h(caption)}' src='data:image/png;base64,{data}'>"
        f"<figcaption>{_h(caption)}</figcaption></figure>"
    )


# ---------------------------------------------------------------------------------------------------------
# Plots


@contextmanager
def _plot(width: float = 8.0, height: float = 4.5) -> Iterator[tuple[Any, Any, list[bytes]]]:
    import matplotlib

    matplotlib.use("Agg")  # no display: render to memory
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height), dpi=90)
    out: list[bytes] = []
    try:
        yield fig, ax, out
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        out.append(buffer.getvalue())
    finally:
        plt.close(fig)


def _plot_ope(e: Evaluation) -> bytes:
    shown = e.policies[: 2 + MAX_CURVES * 2]
    with _plot(8.0, max(3.0, 0.35 * len(shown) + 1.2)) as (_fig, ax, out):
        y = np.arange(len(shown))[::-1]
        for offset, (name, colour) in zip(
            (-0.22, 0.0, 0.22), (("ips", "C0"), ("snips", "C1"), ("dr", "C2")), strict=True
        ):
            estimates = [getattr(p, name) for p in shown]
            centre = np.array([s.estimate for s in estimates])
            low = np.array([s.estimate - s.low for s in estimates])
            high = np.array([s.high - s.estimate for s in estimates])
            ax.errorbar(
                centre, y + offset, xerr=[low, high], fmt="o", color=colour, label=name.upper(), capsize=2, ms=4
            )
        observed = e.policy(LOGGING_POLICY).ips.estimate
        ax.axvline(observed, color="grey", linestyle=":", label="logging (observed)")
        ax.set_yticks(y, [p.policy for p in shown])
        ax.set_xlabel("estimated mean outcome")
        ax.legend(loc="best", fontsize="small")
    return out[0]


def _plot_curves(e: Evaluation, kind: str) -> bytes:
    labels, scores = e.outcomes, e.predicted_logged
    counts = {a: int((e.actions == a).sum()) for a in set(e.actions.tolist())}
    both = [a for a in counts if 0 < labels[e.actions == a].sum() < counts[a]]
    drawn = sorted(both, key=lambda a: -counts[a])[:MAX_CURVES]
    with _plot(7.0, 5.0) as (_fig, ax, out):
        for n, action in enumerate(drawn):
            mine = e.actions == action
            x, y = _roc(labels[mine], scores[mine]) if kind == "roc" else _precision_recall(labels[mine], scores[mine])
            # tab20 and two line styles: twelve curves stay distinguishable
            ax.plot(x, y, linewidth=1, color=_colour(n), linestyle="-" if n % 2 == 0 else "--", label=action)
        if 0 < labels.sum() < len(labels):
            x, y = _roc(labels, scores) if kind == "roc" else _precision_recall(labels, scores)
            ax.plot(x, y, color="black", linewidth=2.2, label="all actions")
        if kind == "roc":
            ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
            ax.set_xlabel("false positive rate")
            ax.set_ylabel("true positive rate")
        else:
            ax.axhline(float(labels.mean()), color="grey", linestyle=":")
            ax.set_xlabel("recall")
            ax.set_ylabel("precision")
        hidden = len(counts) - len(drawn)
        title = f"{len(drawn)} actions" + (f" ({hidden} not drawn: too few rows or one outcome only)" if hidden else "")
        ax.set_title(title, fontsize="small")
        ax.legend(loc="best", fontsize="x-small", ncol=2)
    return out[0]


def _plot_calibration(e: Evaluation) -> bytes:
    predicted, observed = _deciles(e.predicted_logged, e.outcomes)
    with _plot(6.0, 5.0) as (_fig, ax, out):
        top = float(max(predicted.max(initial=0), observed.max(initial=0))) or 1.0
        ax.plot([0, top], [0, top], color="grey", linestyle=":", label="perfect")
        ax.plot(predicted, observed, marker="o", label="model")
        ax.set_xlabel("mean predicted outcome")
        ax.set_ylabel("mean observed outcome")
        ax.legend(loc="best", fontsize="small")
    return out[0]


def _plot_lift(e: Evaluation) -> bytes:
    _, observed = _deciles(e.predicted_logged, e.outcomes)
    overall = float(np.mean(e.outcomes))
    lift = observed / overall if overall else np.zeros_like(observed)
    with _plot(7.0, 4.0) as (_fig, ax, out):
        deciles = np.arange(len(lift), 0, -1)  # decile 1 = the highest predictions
        ax.bar(deciles, lift, color="C0")
        ax.axhline(1.0, color="grey", linestyle=":")
        ax.set_xlabel("decile of predicted outcome (1 = highest)")
        ax.set_ylabel("observed / overall mean")
        ax.set_xticks(deciles)
    return out[0]


def _plot_importance(e: Evaluation) -> bytes:
    booster = e.artifact.booster
    gains = np.asarray(booster.feature_importance(importance_type="gain"), dtype=np.float64)
    names = booster.feature_name()
    top = np.argsort(gains)[::-1][:20]
    top = top[gains[top] > 0] if (gains > 0).any() else top[:1]
    with _plot(8.0, max(3.0, 0.3 * len(top) + 1.0)) as (_fig, ax, out):
        ax.barh(np.arange(len(top))[::-1], gains[top], color="C2")
        ax.set_yticks(np.arange(len(top))[::-1], [names[i] for i in top])
        ax.set_xlabel("total gain")
    return out[0]


def _colour(n: int) -> Any:
    import matplotlib

    return matplotlib.colormaps["tab20"](n % 20)


# ---------------------------------------------------------------------------------------------------------
# Curves


def _roc(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(-scores, kind="mergesort")
    positive = labels[order] > 0
    tp = np.concatenate([[0], np.cumsum(positive)])
    fp = np.concatenate([[0], np.cumsum(~positive)])
    return fp / max(fp[-1], 1), tp / max(tp[-1], 1)


def _precision_recall(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(-scores, kind="mergesort")
    positive = labels[order] > 0
    tp = np.cumsum(positive)
    ranked = np.arange(1, len(positive) + 1)
    return tp / max(tp[-1], 1), tp / ranked


def _deciles(predicted: np.ndarray, observed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean predicted and mean observed outcome in each tenth of the rows, lowest predictions first."""
    order = np.argsort(predicted, kind="mergesort")
    groups: Sequence[np.ndarray] = [g for g in np.array_split(order, min(10, len(order))) if len(g)]
    return (
        np.array([predicted[g].mean() for g in groups]),
        np.array([observed[g].mean() for g in groups]),
    )
