"""Property-based fuzz of the whole OpenAPI schema (schemathesis): no input gives a 5xx.

The API runs under a real uvicorn server against the real Redis and broker, with a tiny
trained run so that model routes are exercised too. Bounded: a few examples per operation.
"""
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings as hsettings

from tests.integration.support import train_tiny_run, uvicorn_thread
from schemas.keys import Keys

pytestmark = [pytest.mark.integration,
              pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")]
K = Keys("sr:")


@pytest.fixture(scope="module")
def fuzz_artifacts(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz-artifacts")
    train_tiny_run(d, ("ease", "two_tower"))
    return d


def test_no_server_errors(settings, redis_client, fuzz_artifacts):
    redis_client.zadd(K.pop_global, {f"i{j}": 50 - j for j in range(50)})
    s = settings.model_copy(update={"artifact_dir": fuzz_artifacts, "emit_impressions": False})
    with uvicorn_thread(s) as url:
        schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 10
        for op in operations:

            @given(case=op.as_strategy())
            @hsettings(max_examples=12, deadline=None, derandomize=True, database=None,
                       suppress_health_check=list(HealthCheck))
            def check(case):
                response = case.call(base_url=url, timeout=10)
                assert response.status_code < 500 or (
                    # the documented 503: an explicit model strategy the run lacks
                    response.status_code == 503 and "model not trained yet" in response.text
                ), f"{case.method} {case.formatted_path} {case.query} {case.body!r} -> {response.status_code} {response.text[:300]}"

            check()
