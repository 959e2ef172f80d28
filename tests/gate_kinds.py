"""What every deployable must say for each kind of image the chest gate tells apart (tests/conftest.py
`gate_kind_files`): the CLI's answer is the reference, the API and the app must give the same."""

# kind -> the gate reason the released model must give it (None: a diagnosis is given)
EXPECTED_REASON = {"film": None, "hannover": None, "inverted": "inverted", "upside_down": "upside_down",
                   "rotated_90_cw": "rotated", "lateral": "not_frontal", "ct": "not_frontal",
                   "photograph": "not_radiograph"}
KEYS = ("class", "class_withheld", "gate_reason", "unlike_training", "band")


def check_expected(results: dict) -> None:
    """Refused kinds get no class and a reason (the transformed films their own reason); films get a diagnosis."""
    for kind, result in results.items():
        reason = EXPECTED_REASON[kind]
        if reason is None:
            assert result["class"] is not None and result["gate_reason"] is None, (kind, result)
        else:
            assert result["class"] is None and result["class_withheld"], (kind, result)
            if kind in ("inverted", "upside_down", "rotated_90_cw"):
                assert result["gate_reason"] == reason, (kind, result)
