"""A throwaway method, written as docs/contributing.md says a new method is: one learner file, then one
registry line. It adapts the head in an inner step only for tasks whose support images are brighter than
the meta-batch's average: a per-task choice of its own, scored, pictured and found in words by itself."""

import matplotlib.pyplot as plt
import torch

from gems_core import mechanism
from gems_core.learners import MAML, Method
from gems_core.models import LAYER_LABELS

PANEL_TITLE = "head adapted (1) or kept (0) in each inner step"


class Brightness(MAML):
    """MAML whose head adapts only for the brighter tasks of a batch (a choice per task: ``choice`` [T, steps, N])."""

    def adapt(self, support_x, support_y, create_graph, track=True):
        brightness = support_x.flatten(1).mean(1)
        self.bright = (brightness > brightness.mean()).to(support_x)
        return super().adapt(support_x, support_y, create_graph, track)

    def inner_update(self, step, params, grads):
        def gate(p):  # 1 for a bright task's head, else 1 everywhere but the head: 0
            return self.bright.view(-1, *[1] * (p.dim() - 1))

        new = {k: p - self.fast_lr * grads[k] * (gate(p) if k.startswith("head") else 1) for k, p in params.items()}
        mask = torch.ones(len(self.bright), len(LAYER_LABELS), device=self.bright.device)
        mask[:, -1] = self.bright
        return new, {"choice": mask}

    # Probed: what it chose per task, and its summary in results.json -> records
    def probe(self, adaptation):
        return {"choice": adaptation.choices["choice"]}

    def summarize_probes(self, probes):
        heads = {d: torch.cat([p["choice"] for p in batches])[..., -1] for d, batches in probes.items()}
        return {d: {"head_adapted": float(head.mean())} for d, head in heads.items()}

    # Scored: does the choice vary, and with the distribution?
    def mechanism_score(self, probes):
        return {"mask": mechanism.layer_mask_scores(mechanism.stacked(probes, "choice"))}

    # Pictured: one task's choice (the explorer), and a run's summary with its finding (the page)
    def draw_choice(self, ax, choices):
        ax.imshow(choices["choice"][0].numpy(), cmap="Greens", vmin=0, vmax=1, aspect="auto")
        ax.set(title=PANEL_TITLE, xticks=range(len(LAYER_LABELS)), xticklabels=LAYER_LABELS)

    @staticmethod
    def records_figure(records):
        fig, ax = plt.subplots(figsize=(4, 2.5))
        ax.bar(list(records), [r["head_adapted"] for r in records.values()])
        ax.set(title="share of tasks whose head adapted", ylim=(0, 1))
        return fig

    @staticmethod
    def records_finding(records, scores):
        shares = ", ".join(f"{d} {r['head_adapted']:.2f}" for d, r in records.items())
        return f"Share of test tasks whose head adapted: {shares}. {mechanism.reading(scores)}."


REGISTRY_LINE = ("brightness", Method(Brightness))  # what the one line in learners/methods.py adds
