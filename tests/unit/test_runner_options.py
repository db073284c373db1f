"""Runner-facing flag handling: unsupported runners refused, Flex Template parameters
turned into select flags."""

import pytest

from zipfit_beam.cli import main as cli_main
from zipfit_beam.cli.options import parse_select_args, template_parameters_to_flags

BASE = ["--source", "s.jsonl", "--target", "t.jsonl", "--output", "out", "--top-k", "3"]


@pytest.mark.parametrize("runner", [
    "DaskRunner", "dask", "daskrunner", "apache_beam.runners.dask.dask_runner.DaskRunner"])
def test_dask_runner_is_refused_with_the_reason(runner):
    with pytest.raises(ValueError, match="finish_bundle"):
        parse_select_args(BASE + [f"--runner={runner}"])


def test_dask_refusal_is_a_clear_cli_error(capsys):
    assert cli_main(["select", *BASE, "--runner=DaskRunner"]) == 2
    assert "not supported" in capsys.readouterr().err


@pytest.mark.parametrize("runner", ["PortableRunner", "FlinkRunner", "DataflowRunner", "FnApiRunner"])
def test_other_runners_pass(runner):
    _, options = parse_select_args(BASE + [f"--runner={runner}"])
    assert options.get_all_options()["runner"] == runner


def test_template_parameters_become_select_flags():
    argv = ["--source=gs://b/*.jsonl", "--overwrite=true", "--top-k=5", "--project=p"]
    assert template_parameters_to_flags(argv) == ["--source=gs://b/*.jsonl", "--overwrite",
                                                  "--top-k=5", "--project=p"]
    assert template_parameters_to_flags(["--overwrite=False", "--top-k=5"]) == ["--top-k=5"]
    config, _ = parse_select_args(template_parameters_to_flags(BASE + ["--overwrite=true"]))
    assert config.overwrite
    with pytest.raises(ValueError, match="true or false"):
        template_parameters_to_flags(["--overwrite=yes"])


def test_views_are_made_once_and_still_behave_as_fresh_views(monkeypatch):
    """Beam asks for view_as(TypeOptions) twice per applied transform; the CLI's options make
    each view once. Writes through one view show in every view, a copy and a pickle; the
    copies do not share the original's views."""
    import copy
    import pickle

    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions, TypeOptions

    _, options = parse_select_args(BASE + ["--runner=FlinkRunner", "--no_pipeline_type_check"])
    parses = []
    init = PipelineOptions.__init__

    def counted_init(self, *args, **kwargs):
        parses.append(type(self))
        init(self, *args, **kwargs)

    monkeypatch.setattr(PipelineOptions, "__init__", counted_init)
    views = [options.view_as(TypeOptions) for _ in range(50)]
    assert parses == [TypeOptions] and all(v is views[0] for v in views)
    assert views[0].pipeline_type_check is False
    options.view_as(StandardOptions).runner = "PortableRunner"
    assert options.get_all_options()["runner"] == "PortableRunner"
    for other in (copy.deepcopy(options), pickle.loads(pickle.dumps(options))):
        assert "_views" not in other.__getstate__()
        assert other.view_as(StandardOptions).runner == "PortableRunner"
        other.view_as(StandardOptions).runner = "FlinkRunner"
        assert options.view_as(StandardOptions).runner == "PortableRunner"
        assert other.view_as(TypeOptions) is not views[0]
