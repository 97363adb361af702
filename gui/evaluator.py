"""Re-running a recipe's rules after a correction: adapts `edge_ocr.rules.verdict` to the review store."""

from __future__ import annotations

from collections.abc import Sequence

from edge_ocr.config import Config
from edge_ocr.fields import ReceiptFields
from edge_ocr.rules.verdict import evaluate
from edge_ocr.store.corrections import Evaluator, VerdictOutcome
from edge_ocr.types import OcrResult, TextLine


def recipe_evaluator(config: Config | None) -> Evaluator | None:
    """None without a config: corrections then keep the verdict the agent gave."""
    if config is None:
        return None

    def run(recipe_name: str | None, lines: Sequence[TextLine]) -> VerdictOutcome | None:
        recipe = config.recipes.get(recipe_name) if recipe_name else None
        if recipe is None:
            return None
        result = OcrResult(lines=tuple(lines), image_size=(0, 0), engine="review", model="review")
        verdict = evaluate(recipe, result)
        fields = {name: reading.value or "" for name, reading in verdict.fields.items() if reading.found}
        return VerdictOutcome(status=verdict.status.value, reasons=tuple(verdict.reasons), fields=fields)

    return run


def field_evaluator(config: Config | None):  # -> store.fields.FieldEvaluator | None
    """Re-run a receipt recipe's rules after a field correction (None without a config)."""
    if config is None:
        return None

    def run(
        recipe_name: str | None, lines: Sequence[TextLine], fields: ReceiptFields
    ) -> VerdictOutcome | None:
        recipe = config.recipes.get(recipe_name) if recipe_name else None
        if recipe is None:
            return None
        result = OcrResult(lines=tuple(lines), image_size=(0, 0), engine="review", model="review")
        verdict = evaluate(recipe, result, fields=dict(fields.items()))
        values = {name: reading.value or "" for name, reading in verdict.fields.items() if reading.found}
        return VerdictOutcome(status=verdict.status.value, reasons=tuple(verdict.reasons), fields=values)

    return run
