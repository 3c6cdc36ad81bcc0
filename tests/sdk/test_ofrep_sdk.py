"""End-to-end: the official OpenFeature Python SDK with its OFREP provider,
unchanged, against a running Commonlab server.

Environment: COMMONLAB_URL (base URL), COMMONLAB_SDK_KEY (an sdk-role key).
"""

import os
import sys
import time
import unittest
import urllib.request

from openfeature import api
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason

URL = os.environ["COMMONLAB_URL"]
KEY = os.environ["COMMONLAB_SDK_KEY"]


def client_with(headers):
    provider = OFREPProvider(URL, headers_factory=lambda: headers)
    api.set_provider(provider, domain=str(id(provider)))
    return api.get_client(domain=str(id(provider)))


class OfrepSdk(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.bearer = client_with({"Authorization": f"Bearer {KEY}"})
        cls.apikey = client_with({"X-API-Key": KEY})

    def ctx(self, key="member-42", **attrs):
        return EvaluationContext(targeting_key=key, attributes=attrs)

    def test_static_boolean(self):
        d = self.bearer.get_boolean_details("new-editor", False, self.ctx())
        self.assertIs(d.value, True)
        self.assertEqual(d.variant, "on")
        self.assertEqual(d.reason, Reason.STATIC)
        self.assertEqual(d.flag_metadata.get("owner"), "wp3")
        self.assertEqual(d.flag_metadata.get("flagSetId"), "sdk-e2e")

    def test_x_api_key_header(self):
        d = self.apikey.get_boolean_details("new-editor", False, self.ctx())
        self.assertIs(d.value, True)
        self.assertIsNone(d.error_code)

    def test_targeting_match_and_default(self):
        d = self.bearer.get_string_details("welcome-text", "x", self.ctx(community="coop-b"))
        self.assertEqual((d.value, d.variant, d.reason), ("Welcome, neighbour", "warm", Reason.TARGETING_MATCH))
        d = self.bearer.get_string_details("welcome-text", "x", self.ctx(community="elsewhere"))
        self.assertEqual((d.value, d.variant, d.reason), ("Welcome", "plain", Reason.DEFAULT))

    def test_integer_and_float_types(self):
        d = self.bearer.get_integer_details("page-size", 1, self.ctx())
        self.assertEqual(d.value, 50)
        self.assertIsInstance(d.value, int)
        d = self.bearer.get_float_details("reward-weight", 1.0, self.ctx())
        self.assertEqual(d.value, 0.5)
        self.assertIsInstance(d.value, float)
        self.assertIsNone(d.error_code)

    def test_object(self):
        d = self.bearer.get_object_details("dashboard-layout", {}, self.ctx())
        self.assertEqual(d.value, {"columns": 3, "charts": ["edits", "thanks"]})

    def test_split_is_sticky_and_spread(self):
        seen = {}
        for i in range(200):
            key = f"member-{i}"
            a = self.bearer.get_string_details("thanks-button", "?", self.ctx(key))
            b = self.bearer.get_string_details("thanks-button", "?", self.ctx(key))
            self.assertEqual(a.value, b.value, key)
            self.assertEqual(a.reason, Reason.SPLIT)
            seen[a.variant] = seen.get(a.variant, 0) + 1
        self.assertEqual(set(seen), {"control", "small", "big"})
        self.assertGreater(seen["control"], 70)

    def test_missing_targeting_key_for_split(self):
        # As flagd: no targetingKey to split on, so the default variant.
        d = self.bearer.get_string_details("thanks-button", "fallback", EvaluationContext(attributes={"community": "wiki-a"}))
        self.assertEqual(d.value, "none")
        self.assertEqual(d.variant, "control")
        self.assertEqual(d.reason, Reason.DEFAULT)
        self.assertIsNone(d.error_code)

    def test_flag_not_found(self):
        d = self.bearer.get_boolean_details("no-such-flag", True, self.ctx())
        self.assertIs(d.value, True)
        self.assertEqual(d.error_code, ErrorCode.FLAG_NOT_FOUND)

    def test_type_mismatch(self):
        d = self.bearer.get_integer_details("welcome-text", 7, self.ctx())
        self.assertEqual(d.value, 7)
        self.assertEqual(d.error_code, ErrorCode.TYPE_MISMATCH)

    def test_disabled_flag_gives_code_default(self):
        d = self.bearer.get_boolean_details("retired-feature", False, self.ctx())
        self.assertIs(d.value, False)

    def test_survey_trigger_flag(self):
        # The server reloads trigger campaigns every poll: wait for it.
        for _ in range(50):
            d = self.bearer.get_object_details("survey-prompt", {"show": False}, self.ctx("member-7"))
            if d.error_code is None:
                break
            time.sleep(0.1)
        self.assertIsNone(d.error_code)
        self.assertEqual((d.value["show"], d.variant, d.reason), (True, "show", Reason.TARGETING_MATCH))
        self.assertEqual((d.value["campaign"], d.value["wave"]), ("sdk-nps", "pulse"))
        self.assertTrue(d.value["url"].startswith("/s/v1."), d.value)
        with urllib.request.urlopen(URL + d.value["url"]) as page:
            self.assertEqual(page.status, 200)
            self.assertIn("<form", page.read().decode())
        d = self.bearer.get_object_details("survey-prompt", {"show": True}, self.ctx("member-8"))
        self.assertEqual((d.value, d.variant), ({"show": False}, "not_invited"))

    def test_bad_key_is_refused(self):
        bad = client_with({"Authorization": "Bearer cl_000000000000_" + "A" * 43})
        d = bad.get_boolean_details("new-editor", False, self.ctx())
        self.assertIs(d.value, False)
        self.assertEqual(d.error_code, ErrorCode.GENERAL)
        self.assertIn("unauthorized", d.error_message or "")


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=2).result
    failed = len(result.failures) + len(result.errors)
    print(f"sdk: {result.testsRun - failed} passed, {failed} failed")
    sys.exit(1 if failed or result.testsRun == 0 else 0)
