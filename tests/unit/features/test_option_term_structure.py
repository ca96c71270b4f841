"""features.option_chains.atm_iv_at_tenors: ATM IV at standard tenors, linear in total variance
between the bracketing expiries, never extrapolated."""

from __future__ import annotations

import math

import numpy as np

from features.option_chains import atm_iv_at_tenors

# A hand-made term structure: expiries at 10, 40 and 100 days with ATM IVs 0.30, 0.25 and 0.20.
YEARS = np.array([10, 40, 100]) / 365.0
IVS = np.array([0.30, 0.25, 0.20])


def test_a_tenor_between_two_expiries_is_linear_in_total_variance():
    got = atm_iv_at_tenors(YEARS, IVS, (30, 60))
    # w(t) = w1 + (w2 - w1) (t - t1) / (t2 - t1), in days/365 units; sigma = sqrt(w / t)
    w10, w40, w100 = 0.30**2 * 10 / 365, 0.25**2 * 40 / 365, 0.20**2 * 100 / 365
    want30 = math.sqrt((w10 + (w40 - w10) * (30 - 10) / (40 - 10)) / (30 / 365))
    want60 = math.sqrt((w40 + (w100 - w40) * (60 - 40) / (100 - 40)) / (60 / 365))
    assert got[0] == want30 and got[1] == want60
    # by hand, in vol^2 x days: w10 = 0.9, w40 = 2.5, w100 = 4.0; at 30 days w = 0.9 + 1.6 * 20/30 = 59/30,
    # sigma = sqrt(59/900) = sqrt(59)/30; at 60 days w = 2.5 + 1.5 * 20/60 = 3, sigma = sqrt(3/60)
    assert abs(got[0] - math.sqrt(59) / 30) < 1e-15 and abs(got[1] - math.sqrt(0.05)) < 1e-15


def test_an_expiry_exactly_at_the_tenor_gives_its_own_iv():
    got = atm_iv_at_tenors(YEARS, IVS, (10, 40, 100))
    assert list(got) == [0.30, 0.25, 0.20]
    # years computed elsewhere (SQL's epoch / (365 * 86400.0)) may differ from days / 365 by an ulp
    nudged = np.array([np.nextafter(10 / 365.0, 1.0), np.nextafter(100 / 365.0, 0.0)])
    assert list(atm_iv_at_tenors(nudged, np.array([0.30, 0.20]), (10, 100))) == [0.30, 0.20]


def test_no_extrapolation_before_the_first_or_after_the_last_expiry():
    got = atm_iv_at_tenors(YEARS, IVS, (7, 30, 101, 365))
    assert math.isnan(got[0]) and not math.isnan(got[1]) and math.isnan(got[2]) and math.isnan(got[3])


def test_expiries_without_an_iv_are_skipped_and_order_does_not_matter():
    years = np.array([100, 10, 70, 40]) / 365.0
    ivs = np.array([0.20, 0.30, np.nan, 0.25])
    np.testing.assert_array_equal(
        atm_iv_at_tenors(years, ivs, (30, 60, 90)), atm_iv_at_tenors(YEARS, IVS, (30, 60, 90))
    )
    assert np.isnan(atm_iv_at_tenors(np.array([]), np.array([]), (7, 30))).all()
    # a single expiry brackets nothing but itself
    single = atm_iv_at_tenors(np.array([30 / 365.0]), np.array([0.22]), (7, 30, 60))
    assert math.isnan(single[0]) and single[1] == 0.22 and math.isnan(single[2])
