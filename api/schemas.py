"""The API's JSON bodies as Pydantic models: FastAPI checks every answer against them and generates the OpenAPI
document from them.

Fields are declared in the order the keys are sent. A key that a result has only sometimes (`class_withheld`, the
lung outputs) has a default and the routes answer with `response_model_exclude_unset`, so it stays absent rather
than being sent as null; `class` and a batch entry's `filename` are sent as null when they are.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


class ModelInfo(BaseModel):
    """The model that answered."""

    name: str
    version: str
    file: str = Field(description="the ONNX file served (model.onnx, or model.int8.onnx)")


class ErrorBody(BaseModel):
    """Every error: never a traceback or a server path."""

    error: str = Field(description="the HTTP status phrase, lower case (e.g. 'unsupported media type')")
    reason: str = Field(description="why, in words meant for the client (for a bad image: the decoder's reason)")


class SiteProfileSummary(BaseModel):
    """The site profile that calibrated a result (present only when the server applies one)."""

    site: str = Field(description="the site the probabilities, class and band are calibrated for")
    films: int = Field(description="labelled films of that site the profile was fitted on")
    created: str = Field(description="when the profile was fitted (UTC)")
    summary: str = Field(description="the same in words, e.g. 'calibrated for St Elsewhere (site profile of 40 "
                                     "films, 2026-12-08)'")


class Analysis(BaseModel):
    """One image's result: what `cxr predict` prints for it (runtime.predictor.Predictor), with the model."""

    probabilities: dict[str, float] = Field(description="calibrated, keyed by class name in model.json's order")
    class_: str | None = Field(alias="class", description="the predicted class; null for an image the chest gate "
                                                          "refuses (no diagnosis is given for it)")
    class_withheld: str | None = Field(None, description="why `class` is null (present only then)")
    top_class: str = Field(description="the model's raw argmax, whatever the image is")
    band: Literal["confident", "uncertain"] | None = Field(
        description="uncertain below the threshold of model.json `uncertainty`, or for a film unlike the training "
                    "films; null for a withheld result or a model without the rule")
    gate: float | None = Field(None, description="gated models: the probability of a frontal chest radiograph, "
                                                 "upright and not inverted (below model.json `gate.threshold`: "
                                                 "refused)")
    gate_reason: str | None = Field(None, description="gated models: why the gate refused the image (one of "
                                                      "model.json `gate.reasons`); null when it passed")
    unlike_training: bool = Field(description="a diagnosis shown for a film unlike the training films (the OOD "
                                              "distance, with a gate): validate at your site before relying on it")
    unlike_training_note: str | None = Field(None, description="the words for unlike_training (present only then)")
    ood_score: float = Field(description="distance from the training images")
    ood: bool = Field(description="ood_score over model.json `ood_threshold`: unlike the training X-rays (withholds "
                                  "only for a model without a gate)")
    hottest_cell: list[int] = Field(description="[row, col] of the hottest cell of the top class's heatmap grid")
    crop_box: list[float] | None = Field(None, description="lung models only: [x0, y0, x1, y1] in image pixels, "
                                                           "where the heatmap grid lies")
    lung_fallback: bool | None = Field(None, description="lung models only: the lung mask was implausible, the "
                                                         "whole image was used")
    lung_evidence: float | None = Field(None, description="lung models only: the share of the top class's heatmap "
                                                          "inside the lungs")
    lung_evidence_low: bool | None = Field(None, description="lung models only: lung_evidence below model.json "
                                                             "`lungs.evidence_threshold`")
    site_profile: SiteProfileSummary | None = Field(
        None, description="present only when a site profile calibrates the results (cxr api --site-profile): "
                          "probabilities, class, top_class and band are then the site's calibrated ones")
    inference_ms: float
    height: int = Field(description="the decoded image's size in pixels")
    width: int
    decode_ms: float
    total_ms: float = Field(description="decoding and inference")
    model: ModelInfo


class Prediction(Analysis):
    """POST /v1/predict: one image's result."""

    queue_ms: float = Field(description="how long the request waited for an inference thread")


class BatchEntry(BaseModel):
    index: int = Field(description="the file's place in the request, from 0")
    filename: str | None = Field(description="as the client named the part (null without a name)")
    status: int = Field(description="this file's own status: 200, or its error's")


# Pydantic lays out the fields of the last base first: index, filename and status, then the result or the error.
class BatchResult(Analysis, BatchEntry):
    """A file of the batch that was analysed."""


class BatchError(ErrorBody, BatchEntry):
    """A file of the batch that could not be analysed (the others go on)."""


class SiteShift(BaseModel):
    """Whether the batch's films, taken as one site's, differ from the validation split's beyond what sampling
    explains (runtime/site_shift.py; docs/site.md): their OOD scores (Kolmogorov-Smirnov) and predicted classes
    (chi-square), Bonferroni for the two. No labels are needed."""

    judged: bool = Field(description="false below min_films analysed files, or for a model without the reference")
    shifted: bool | None = Field(description="true: validate locally before relying on the results; null when not "
                                             "judged")
    n: int = Field(description="the batch's analysed files (those with an error take no part)")
    min_films: int = Field(description="the fewest films the check judges")
    alpha: float | None = Field(description="shifted when p_value is below it")
    p_value: float | None = Field(description="min(1, 2 * the smaller of p_values); null when not judged")
    p_values: dict[str, float] | None = Field(description="ood_score: Kolmogorov-Smirnov, predicted_class: "
                                                          "chi-square, each against the validation split's")
    statistics: dict[str, float | int] | None = Field(description="ks_d, chi_square and its df")
    class_counts: dict[str, int] = Field(description="the batch's predicted classes (the argmax of the logits, "
                                                     "before any site profile)")
    message: str = Field(description="the verdict in words")


class BatchResponse(BaseModel):
    """POST /v1/predict/batch: one entry per file, in order, and the site-shift check over the batch."""

    results: list[BatchResult | BatchError]
    site_shift: SiteShift
    queue_ms: float = Field(description="how long the request waited for an inference thread")
    model: ModelInfo


class SiteParameters(BaseModel):
    offsets: list[float] = Field(description="added to the logits, one per class in model.json's order")
    temperature: float = Field(description="the site's t: probabilities = softmax((logits + offsets) / "
                                           "(model temperature * t))")
    model_temperature: float
    fitted: dict[str, Any] = Field(description="the classes whose offset was fitted, and whether t was")


class SiteProfileCard(BaseModel):
    """The site profile applied to every result (runtime/site-profile.schema.json; docs/site.md)."""

    model_config = ConfigDict(extra="allow")

    site: str
    created: str
    films: int
    patients: int
    films_per_class: dict[str, int]
    parameters: SiteParameters
    band: dict[str, Any] | None = Field(description="the uncertainty rule used with the profile")
    cross_validated: dict[str, Any] = Field(description="accuracy, AUC and calibration on the site's films before "
                                                        "and after, cross-validated by patient")


class ModelCard(BaseModel):
    """GET /v1/model: model.json as a client may see it (its other keys as they are in the file), without where
    its checkpoint and data lay on the build machine; `site_profile` when the server applies one."""

    model_config = ConfigDict(extra="allow")

    format: int | None = None
    name: str
    version: str
    created: str | None = None
    demo: bool | None = Field(None, description="true for a model trained on synthetic phantoms only")
    classes: list[str] | None = None
    site_profile: SiteProfileCard | None = Field(None, description="the site profile applied to every result "
                                                                   "(cxr api --site-profile); absent without one")


class Health(BaseModel):
    status: Literal["ok"]


class QueueState(BaseModel):
    active: int = Field(description="requests admitted now, running or waiting")
    depth: int = Field(description="requests admitted at once, beyond which 503")


class Ready(BaseModel):
    status: Literal["ready"]
    queue: QueueState
    model: ModelInfo


class NotReady(ErrorBody):
    """503 from /readyz: warming up, or the queue is full."""

    queue: QueueState


class SingleUpload(BaseModel):
    file: bytes = Field(description="a PNG, JPEG or DICOM file")


class BatchUpload(BaseModel):
    file: list[bytes] = Field(description="PNG, JPEG or DICOM files, one part each")


def request_body(content: dict[str, Any]) -> dict:
    """`openapi_extra` declaring the request body of a route that reads its body itself (api.limits.read_body and
    api.uploads: bounded and in memory, where FastAPI's own form parsing would spool large files to disk), from
    these types by media type; FastAPI cannot see such a body."""
    return {"requestBody": {"required": True, "content": {
        media: {"schema": TypeAdapter(kind).json_schema()} for media, kind in content.items()}}}
