"""voxtok.convert.cosyvoice_yaml: a release's HyperPyYAML read as data, nothing imported or run."""

from __future__ import annotations

import pytest

from voxtok.convert.cosyvoice_yaml import Tagged, part, read_cosyvoice_yaml
from voxtok.errors import BadConfigError

RELEASE_LIKE = """\
__set_seed1: !apply:random.seed [1986]
sample_rate: 22050
hop: 256
llm_input_size: 1024
llm: !new:cosyvoice.llm.llm.TransformerLM
    llm_input_size: !ref <llm_input_size>
    text_encoder: !new:cosyvoice.transformer.encoder.ConformerEncoder
        output_size: 1024
    sampling: !name:cosyvoice.utils.common.ras_sampling
        top_p: 0.8
flow: !new:cosyvoice.flow.flow.MaskedDiffWithXvec
    decoder: !new:cosyvoice.flow.flow_matching.ConditionalCFM
        cfm_params: !new:omegaconf.DictConfig
            content:
                sigma_min: 1e-06
    window: !ref <hop> * 4
    half_rate: !ref <sample_rate> // 2
    encoder_width: !ref <llm[text_encoder][output_size]>
    sampling_p: !ref <llm.sampling.top_p>
estimator: !new:torch.nn.Identity
pipeline: [
    !ref <estimator>,
    !name:cosyvoice.dataset.processor.sort,
]
"""


def test_tags_are_recorded_and_references_resolved(tmp_path):
    path = tmp_path / "cosyvoice.yaml"
    path.write_text(RELEASE_LIKE)
    config = read_cosyvoice_yaml(path)
    assert config["__set_seed1"] == Tagged("apply", "random.seed", [1986])
    llm = config["llm"]
    assert llm.kind == "new" and llm.target == "cosyvoice.llm.llm.TransformerLM"
    assert llm.args["llm_input_size"] == 1024
    assert llm.args["sampling"] == Tagged("name", "cosyvoice.utils.common.ras_sampling", {"top_p": 0.8})
    flow = config["flow"].args
    assert flow["decoder"].args["cfm_params"].args == {"content": {"sigma_min": 1e-06}}  # YAML 1.2 float
    assert (flow["window"], flow["half_rate"], flow["encoder_width"], flow["sampling_p"]) == (1024, 11025, 1024, 0.8)
    assert config["estimator"] == Tagged("new", "torch.nn.Identity", {})
    assert config["pipeline"] == [config["estimator"], Tagged("name", "cosyvoice.dataset.processor.sort", {})]
    target, args = part(config, "llm", ["cosyvoice.llm.llm.TransformerLM"], path)
    assert target == "cosyvoice.llm.llm.TransformerLM" and args["llm_input_size"] == 1024


@pytest.mark.parametrize("text, message", [
    ("a: !ref <missing>\n", "!ref <missing> names no entry"),
    ("a: !ref <b>\nb: !ref <a>\n", "reference cycle"),
    ("a: 2\nb: !ref <a> + __import__('os')\n", "only arithmetic"),
    ("- 1\n- 2\n", "not a mapping"),
    ("a: [1, 2\n", "cannot read"),
])
def test_bad_files_are_one_line_errors(tmp_path, text, message):
    path = tmp_path / "cosyvoice.yaml"
    path.write_text(text)
    with pytest.raises(BadConfigError) as err:
        read_cosyvoice_yaml(path)
    assert message in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(BadConfigError, match="not found"):
        read_cosyvoice_yaml(tmp_path / "absent.yaml")


def test_part_names_what_it_found(tmp_path):
    path = tmp_path / "cosyvoice.yaml"
    path.write_text("llm: !new:cosyvoice.llm.llm.Qwen2LM\n    llm_input_size: 896\nflow: 3\n")
    config = read_cosyvoice_yaml(path)
    with pytest.raises(BadConfigError, match="'llm' is cosyvoice.llm.llm.Qwen2LM; supported: TransformerLM"):
        part(config, "llm", ["cosyvoice.llm.llm.TransformerLM"], path)
    with pytest.raises(BadConfigError, match="'flow' is not a !new: object"):
        part(config, "flow", ["cosyvoice.flow.flow.MaskedDiffWithXvec"], path)
