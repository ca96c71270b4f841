"""Implied volatility and greeks of European options under Black-Scholes-Merton, in numba, over whole chains.

Each quote carries its own spot ``S``, strike ``K``, time to expiry ``T`` (years), continuously
compounded rate ``r`` and dividend yield ``q``; the kernels take one array per input and write one
array per output, a ``prange`` over quotes (``parallel=True``), nothing allocated inside.

**Solver.** The price is undiscounted (``price * exp(rT)``) against the forward
``F = S exp((r-q)T)``, so that the problem is Black's, and handed to a port of Peter Jaeckel's
"Let's Be Rational" (2013-2014), which maps in-the-money quotes to out-of-the-money ones by
put-call parity, works on the normalised price ``beta = price / sqrt(F K)`` of ``x = ln(F/K)`` and
``s = sigma sqrt(T)``, starts from a rational-cubic guess on one of four segments of the price curve
and finishes with at most two Householder(3) steps inside a maintained bracket (bisection when a
step leaves it), on a transformed objective in the two outer segments (``1/ln b`` below, ``ln(b_max - b)``
above) so that the deep tails converge too. The normalised Black function is evaluated on the four
regions of the paper: asymptotic expansion, small-``s`` expansion, plain normal CDFs, and Cody's
scaled complementary error function ``erfcx`` (one exponential instead of three). The result is
accurate to a few ulps of ``s`` wherever the price determines the volatility at all.

The port follows the pure-Python ``py_lets_be_rational`` / ``cody_special`` / ``piecewise_rational``
packages of vollib (MIT, Copyright 2017 Gammon Capital LLC) and Jaeckel's reference code, whose
notice is preserved as it asks:

    Copyright (c) 2013-2014 Peter Jaeckel.
    Permission to use, copy, modify, and distribute this software is freely granted,
    provided that this notice is preserved.
    WARRANTY DISCLAIMER: The Software is provided "as is" without warranty of any kind, either
    express or implied, including without limitation any implied warranties of condition,
    uninterrupted use, merchantability, fitness for a particular purpose, or non-infringement.

Two departures from the Python port: the upper segment's bisection fallback is Jaeckel's C form (the
Python port reset its reversal counter and step on every iteration), and a quote without a solution
is a reason code, not an exception.

**No solution, no number.** A quote whose volatility is not defined gets ``NaN`` and a reason
(:data:`REASONS`): a missing (non-finite) input, a non-positive price, spot, strike or time, a crossed
quote (``bid > ask``, flagged by :func:`mid_prices`), a price below the European lower bound
``max(S e^{-qT} - K e^{-rT}, 0)`` for calls (``max(K e^{-rT} - S e^{-qT}, 0)`` for puts), a price equal to
it (no time value: the volatility is 0 and the greeks are undefined), or a price at or above the
upper bound (``S e^{-qT}`` for calls, ``K e^{-rT}`` for puts). Reasons are checked in that order.

**Greeks** are analytic BSM with the dividend yield, per unit: delta and gamma per unit of spot,
vega per 1.00 of volatility, theta per year of calendar time (the value's change as time passes,
``-dV/dT``), rho per 1.00 of rate. (vollib scales vega and rho per 1 % and theta per day.)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numba
import numpy as np
from numba import njit, prange

from core.errors import RequestError

# ---------------------------------------------------------------------------------------------
# Reasons: why a quote has no implied volatility (int8 per quote, 0 when it has one).

IV_OK = 0
IV_MISSING_INPUT = 1
IV_NONPOSITIVE_INPUT = 2
IV_CROSSED = 3
IV_BELOW_INTRINSIC = 4
IV_NO_TIME_VALUE = 5
IV_ABOVE_MAXIMUM = 6
IV_UNRESOLVED = 7

REASONS: dict[int, str] = {
    IV_OK: "ok",
    IV_MISSING_INPUT: "missing input (NaN or infinite price, spot, strike, time, rate or yield)",
    IV_NONPOSITIVE_INPUT: "non-positive price, spot, strike or time to expiry",
    IV_CROSSED: "crossed quote (bid above ask)",
    IV_BELOW_INTRINSIC: "price below the discounted intrinsic value",
    IV_NO_TIME_VALUE: "price equal to the discounted intrinsic value (no time value)",
    IV_ABOVE_MAXIMUM: "price at or above its upper bound (S e^-qT for calls, K e^-rT for puts)",
    IV_UNRESOLVED: "the solver found no finite positive volatility",
}

# ---------------------------------------------------------------------------------------------
# Constants (IEEE double)

_DBL_EPSILON = float(np.finfo(np.float64).eps)
_DBL_MIN = float(np.finfo(np.float64).tiny)
_DBL_MAX = float(np.finfo(np.float64).max)
_SQRT_DBL_EPSILON = math.sqrt(_DBL_EPSILON)
_FOURTH_ROOT_DBL_EPSILON = math.sqrt(_SQRT_DBL_EPSILON)
_SIXTEENTH_ROOT_DBL_EPSILON = math.sqrt(math.sqrt(_FOURTH_ROOT_DBL_EPSILON))
_SQRT_DBL_MIN = math.sqrt(_DBL_MIN)
_SQRT_DBL_MAX = math.sqrt(_DBL_MAX)

_ONE_OVER_SQRT_TWO = 0.7071067811865475244008443621048490392848359376887
_ONE_OVER_SQRT_TWO_PI = 0.3989422804014326779399460599343818684758586311649
_SQRT_TWO_PI = 2.506628274631000502415765284811045253006986740610
_TWO_PI = 6.283185307179586476925286766559005768394338798750
_SQRT_PI_OVER_TWO = 1.253314137315500251207882642405522626503493370305
_SQRT_THREE = 1.732050807568877293527446341505872366942805253810
_SQRT_ONE_OVER_THREE = 0.577350269189625764509148780501957455647601751270
_TWO_PI_OVER_SQRT_TWENTY_SEVEN = 1.209199576156145233729385505094770488189377498728
_PI_OVER_SIX = 0.523598775598298873077107230546583814032861566563

_ITERATIONS = 2
_ASYMPTOTIC_THRESHOLD = -10.0
_SMALL_T_THRESHOLD = 2 * _SIXTEENTH_ROOT_DBL_EPSILON
_RC_MIN = -(1 - _SQRT_DBL_EPSILON)
_RC_MAX = 2 / (_DBL_EPSILON * _DBL_EPSILON)

# ---------------------------------------------------------------------------------------------
# W. J. Cody's rational Chebyshev approximations of erf, erfc and erfcx (Math. Comp., 1969)

_CA = (3.1611237438705656, 113.864154151050156, 377.485237685302021, 3209.37758913846947, 0.185777706184603153)
_CB = (23.6012909523441209, 244.024637934444173, 1282.61652607737228, 2844.23683343917062)
_CC = (
    0.564188496988670089,
    8.88314979438837594,
    66.1191906371416295,
    298.635138197400131,
    881.95222124176909,
    1712.04761263407058,
    2051.07837782607147,
    1230.33935479799725,
    2.15311535474403846e-8,
)
_CD = (
    15.7449261107098347,
    117.693950891312499,
    537.181101862009858,
    1621.38957456669019,
    3290.79923573345963,
    4362.61909014324716,
    3439.36767414372164,
    1230.33935480374942,
)
_CP = (
    0.305326634961232344,
    0.360344899949804439,
    0.125781726111229246,
    0.0160837851487422766,
    6.58749161529837803e-4,
    0.0163153871373020978,
)
_CQ = (2.56852019228982242, 1.87295284992346047, 0.527905102951428412, 0.0605183413124413191, 0.00233520497626869185)
_SQRPI = 0.56418958354775628695
_XNEG = -26.628
_XSMALL = 1.11e-16
_XBIG = 26.543
_XHUGE = 6.71e7
_XMAX = 2.53e307
_XINF = 1.79e308


@njit(cache=True, inline="always")
def _d_int(x):
    return math.floor(x) if x > 0 else -math.floor(-x)


@njit(cache=True)
def _calerf(x, jint):
    """erf (``jint`` 0), erfc (1) or erfcx (2) of ``x``: Cody's CALERF."""
    y = abs(x)
    if y <= 0.46875:
        ysq = 0.0
        if y > _XSMALL:
            ysq = y * y
        xnum = _CA[4] * ysq
        xden = ysq
        xnum = (xnum + _CA[0]) * ysq
        xden = (xden + _CB[0]) * ysq
        xnum = (xnum + _CA[1]) * ysq
        xden = (xden + _CB[1]) * ysq
        xnum = (xnum + _CA[2]) * ysq
        xden = (xden + _CB[2]) * ysq
        result = x * (xnum + _CA[3]) / (xden + _CB[3])
        if jint != 0:
            result = 1.0 - result
        if jint == 2:
            result *= math.exp(ysq)
        return result
    if y <= 4.0:
        xnum = _CC[8] * y
        xden = y
        for i in range(7):
            xnum = (xnum + _CC[i]) * y
            xden = (xden + _CD[i]) * y
        result = (xnum + _CC[7]) / (xden + _CD[7])
        if jint != 2:
            ysq = _d_int(y * 16.0) / 16.0
            delta = (y - ysq) * (y + ysq)
            result *= math.exp(-ysq * ysq) * math.exp(-delta)
    else:
        result = 0.0
        if y >= _XBIG:
            if jint != 2 or y >= _XMAX:
                return _calerf_negative(jint, result, x)
            if y >= _XHUGE:
                return _calerf_negative(jint, _SQRPI / y, x)
        ysq = 1.0 / (y * y)
        xnum = _CP[5] * ysq
        xden = ysq
        for i in range(4):
            xnum = (xnum + _CP[i]) * ysq
            xden = (xden + _CQ[i]) * ysq
        result = ysq * (xnum + _CP[4]) / (xden + _CQ[4])
        result = (_SQRPI - result) / y
        if jint != 2:
            ysq = _d_int(y * 16.0) / 16.0
            delta = (y - ysq) * (y + ysq)
            result *= math.exp(-ysq * ysq) * math.exp(-delta)
    return _calerf_negative(jint, result, x)


@njit(cache=True)
def _calerf_negative(jint, result, x):
    if jint == 0:
        result = (0.5 - result) + 0.5
        if x < 0.0:
            result = -result
    elif jint == 1:
        if x < 0.0:
            result = 2.0 - result
    elif x < 0.0:
        if x < _XNEG:
            result = _XINF
        else:
            ysq = _d_int(x * 16.0) / 16.0
            delta = (x - ysq) * (x + ysq)
            y = math.exp(ysq * ysq) * math.exp(delta)
            result = y + y - result
    return result


@njit(cache=True)
def erfc_cody(x: float) -> float:
    """The complementary error function, Cody's approximation."""
    return _calerf(x, 1)


@njit(cache=True)
def erfcx_cody(x: float) -> float:
    """The scaled complementary error function ``exp(x*x) * erfc(x)``, Cody's approximation."""
    return _calerf(x, 2)


@njit(cache=True, inline="always")
def _norm_pdf(x):
    return _ONE_OVER_SQRT_TWO_PI * math.exp(-0.5 * x * x)


_NORM_CDF_SECOND_THRESHOLD = -1 / _SQRT_DBL_EPSILON


@njit(cache=True)
def norm_cdf(z: float) -> float:
    """The standard normal CDF, accurate in the lower tail (Abramowitz & Stegun 26.2.12 below -10)."""
    if z <= _ASYMPTOTIC_THRESHOLD:
        total = 1.0
        if z >= _NORM_CDF_SECOND_THRESHOLD:
            zsqr = z * z
            i = 1
            g = 1.0
            x = (4 * i - 3) / zsqr
            y = x * ((4 * i - 1) / zsqr)
            a = g * (x - y)
            total -= a
            g *= y
            i += 1
            a = abs(a)
            lasta = _DBL_MAX
            while lasta > a >= abs(total * _DBL_EPSILON):
                lasta = a
                x = (4 * i - 3) / zsqr
                y = x * ((4 * i - 1) / zsqr)
                a = g * (x - y)
                total -= a
                g *= y
                i += 1
                a = abs(a)
        return -_norm_pdf(z) * total / z
    return 0.5 * _calerf(-z * _ONE_OVER_SQRT_TWO, 1)


_AS241_A = (
    3.3871328727963666080e0,
    1.3314166789178437745e2,
    1.9715909503065514427e3,
    1.3731693765509461125e4,
    4.5921953931549871457e4,
    6.7265770927008700853e4,
    3.3430575583588128105e4,
    2.5090809287301226727e3,
)
_AS241_B = (
    1.0,
    4.2313330701600911252e1,
    6.8718700749205790830e2,
    5.3941960214247511077e3,
    2.1213794301586595867e4,
    3.9307895800092710610e4,
    2.8729085735721942674e4,
    5.2264952788528545610e3,
)
_AS241_C = (
    1.42343711074968357734e0,
    4.63033784615654529590e0,
    5.76949722146069140550e0,
    3.64784832476320460504e0,
    1.27045825245236838258e0,
    2.41780725177450611770e-1,
    2.27238449892691845833e-2,
    7.74545014278341407640e-4,
)
_AS241_D = (
    1.0,
    2.05319162663775882187e0,
    1.67638483018380384940e0,
    6.89767334985100004550e-1,
    1.48103976427480074590e-1,
    1.51986665636164571966e-2,
    5.47593808499534494600e-4,
    1.05075007164441684324e-9,
)
_AS241_E = (
    6.65790464350110377720e0,
    5.46378491116411436990e0,
    1.78482653991729133580e0,
    2.96560571828504891230e-1,
    2.65321895265761230930e-2,
    1.24266094738807843860e-3,
    2.71155556874348757815e-5,
    2.01033439929228813265e-7,
)
_AS241_F = (
    1.0,
    5.99832206555887937690e-1,
    1.36929880922735805310e-1,
    1.48753612908506148525e-2,
    7.86869131145613259100e-4,
    1.84631831751005468180e-5,
    1.42151175831644588870e-7,
    2.04426310338993978564e-15,
)


@njit(cache=True, inline="always")
def _horner_ratio(num, den, r):
    """``num(r) / den(r)`` of two degree-7 polynomials given lowest coefficient first."""
    p = num[7]
    d = den[7]
    for i in range(6, -1, -1):
        p = p * r + num[i]
        d = d * r + den[i]
    return p / d


@njit(cache=True)
def _inverse_norm_cdf(u):
    """Algorithm AS241 (Wichura, Appl. Statist. 1988): the normal quantile to about 1e-16."""
    if u <= 0:
        return math.log(u) if u == 0 else math.nan
    if u >= 1:
        return math.log(1 - u) if u == 1 else math.nan
    q = u - 0.5
    if abs(q) <= 0.425:
        r = 0.180625 - q * q
        return q * _horner_ratio(_AS241_A, _AS241_B, r)
    r = u if q < 0.0 else 1.0 - u
    r = math.sqrt(-math.log(r))
    ret = _horner_ratio(_AS241_C, _AS241_D, r - 1.6) if r < 5.0 else _horner_ratio(_AS241_E, _AS241_F, r - 5.0)
    return -ret if q < 0.0 else ret


# ---------------------------------------------------------------------------------------------
# Rational cubic interpolation (Delbourgo & Gregory 1985, as in Let's Be Rational)


@njit(cache=True, inline="always")
def _is_zero(x):
    return abs(x) < _DBL_MIN


@njit(cache=True)
def _rational_cubic_interpolation(x, x_l, x_r, y_l, y_r, d_l, d_r, r):
    h = x_r - x_l
    if abs(h) <= 0:
        return 0.5 * (y_l + y_r)
    t = (x - x_l) / h
    if not (r >= _RC_MAX):
        omt = 1 - t
        t2 = t * t
        omt2 = omt * omt
        return (y_r * t2 * t + (r * y_r - h * d_r) * t2 * omt + (r * y_l + h * d_l) * t * omt2 + y_l * omt2 * omt) / (
            1 + (r - 3) * t * omt
        )
    return y_r * t + y_l * (1 - t)


@njit(cache=True)
def _minimum_rational_cubic_control_parameter(d_l, d_r, s, prefer_shape_preservation):
    monotonic = d_l * s >= 0 and d_r * s >= 0
    convex = d_l <= s <= d_r
    concave = d_l >= s >= d_r
    if not monotonic and not convex and not concave:
        return _RC_MIN
    d_r_m_d_l = d_r - d_l
    d_r_m_s = d_r - s
    s_m_d_l = s - d_l
    r1 = -_DBL_MAX
    r2 = r1
    if monotonic:
        if not _is_zero(s):
            r1 = (d_r + d_l) / s
        elif prefer_shape_preservation:
            r1 = _RC_MAX
    if convex or concave:
        if not (_is_zero(s_m_d_l) or _is_zero(d_r_m_s)):
            r2 = max(abs(d_r_m_d_l / d_r_m_s), abs(d_r_m_d_l / s_m_d_l))
        elif prefer_shape_preservation:
            r2 = _RC_MAX
    elif monotonic and prefer_shape_preservation:
        r2 = _RC_MAX
    return max(_RC_MIN, max(r1, r2))


@njit(cache=True)
def _convex_control_parameter_left(x_l, x_r, y_l, y_r, d_l, d_r, second_derivative_l, prefer_shape_preservation):
    h = x_r - x_l
    numerator = 0.5 * h * second_derivative_l + (d_r - d_l)
    if _is_zero(numerator):
        r = 0.0
    else:
        denominator = (y_r - y_l) / h - d_l
        r = (_RC_MAX if numerator > 0 else _RC_MIN) if _is_zero(denominator) else numerator / denominator
    r_min = _minimum_rational_cubic_control_parameter(d_l, d_r, (y_r - y_l) / (x_r - x_l), prefer_shape_preservation)
    return max(r, r_min)


@njit(cache=True)
def _convex_control_parameter_right(x_l, x_r, y_l, y_r, d_l, d_r, second_derivative_r, prefer_shape_preservation):
    h = x_r - x_l
    numerator = 0.5 * h * second_derivative_r + (d_r - d_l)
    if _is_zero(numerator):
        r = 0.0
    else:
        denominator = d_r - (y_r - y_l) / h
        r = (_RC_MAX if numerator > 0 else _RC_MIN) if _is_zero(denominator) else numerator / denominator
    r_min = _minimum_rational_cubic_control_parameter(d_l, d_r, (y_r - y_l) / (x_r - x_l), prefer_shape_preservation)
    return max(r, r_min)


# ---------------------------------------------------------------------------------------------
# The normalised Black function b(x, s) = Phi(x/s + s/2) e^{x/2} - Phi(x/s - s/2) e^{-x/2}


@njit(cache=True)
def _normalised_intrinsic_call(x):
    if x <= 0:
        return 0.0
    x2 = x * x
    if x2 < 98 * _FOURTH_ROOT_DBL_EPSILON:
        return abs(
            max(
                x
                * (1 + x2 * ((1.0 / 24.0) + x2 * ((1.0 / 1920.0) + x2 * ((1.0 / 322560.0) + (1.0 / 92897280.0) * x2)))),
                0.0,
            )
        )
    b_max = math.exp(0.5 * x)
    return abs(max(b_max - 1 / b_max, 0.0))


@njit(cache=True)
def _asymptotic_expansion_of_normalised_black_call(h, t):
    """Region 1 (``h < -10`` and small ``t - |h|``): a 17th-order expansion with one exponential."""
    e = (t / h) * (t / h)
    r = (h + t) * (h - t)
    q = (h / r) * (h / r)
    # fmt: off
    asymptotic_expansion_sum = (2.0+q*(-6.0E0-2.0*e+3.0*q*(1.0E1+e*(2.0E1+2.0*e)+5.0*q*(-1.4E1+e*(-7.0E1+e*(-4.2E1-2.0*e))+7.0*q*(1.8E1+e*(1.68E2+e*(2.52E2+e*(7.2E1+2.0*e)))+9.0*q*(-2.2E1+e*(-3.3E2+e*(-9.24E2+e*(-6.6E2+e*(-1.1E2-2.0*e))))+1.1E1*q*(2.6E1+e*(5.72E2+e*(2.574E3+e*(3.432E3+e*(1.43E3+e*(1.56E2+2.0*e)))))+1.3E1*q*(-3.0E1+e*(-9.1E2+e*(-6.006E3+e*(-1.287E4+e*(-1.001E4+e*(-2.73E3+e*(-2.1E2-2.0*e))))))+1.5E1*q*(3.4E1+e*(1.36E3+e*(1.2376E4+e*(3.8896E4+e*(4.862E4+e*(2.4752E4+e*(4.76E3+e*(2.72E2+2.0*e)))))))+1.7E1*q*(-3.8E1+e*(-1.938E3+e*(-2.3256E4+e*(-1.00776E5+e*(-1.84756E5+e*(-1.51164E5+e*(-5.4264E4+e*(-7.752E3+e*(-3.42E2-2.0*e))))))))+1.9E1*q*(4.2E1+e*(2.66E3+e*(4.0698E4+e*(2.3256E5+e*(5.8786E5+e*(7.05432E5+e*(4.0698E5+e*(1.08528E5+e*(1.197E4+e*(4.2E2+2.0*e)))))))))+2.1E1*q*(-4.6E1+e*(-3.542E3+e*(-6.7298E4+e*(-4.90314E5+e*(-1.63438E6+e*(-2.704156E6+e*(-2.288132E6+e*(-9.80628E5+e*(-2.01894E5+e*(-1.771E4+e*(-5.06E2-2.0*e))))))))))+2.3E1*q*(5.0E1+e*(4.6E3+e*(1.0626E5+e*(9.614E5+e*(4.08595E6+e*(8.9148E6+e*(1.04006E7+e*(6.53752E6+e*(2.16315E6+e*(3.542E5+e*(2.53E4+e*(6.0E2+2.0*e)))))))))))+2.5E1*q*(-5.4E1+e*(-5.85E3+e*(-1.6146E5+e*(-1.77606E6+e*(-9.37365E6+e*(-2.607579E7+e*(-4.01166E7+e*(-3.476772E7+e*(-1.687257E7+e*(-4.44015E6+e*(-5.9202E5+e*(-3.51E4+e*(-7.02E2-2.0*e))))))))))))+2.7E1*q*(5.8E1+e*(7.308E3+e*(2.3751E5+e*(3.12156E6+e*(2.003001E7+e*(6.919458E7+e*(1.3572783E8+e*(1.5511752E8+e*(1.0379187E8+e*(4.006002E7+e*(8.58429E6+e*(9.5004E5+e*(4.7502E4+e*(8.12E2+2.0*e)))))))))))))+2.9E1*q*(-6.2E1+e*(-8.99E3+e*(-3.39822E5+e*(-5.25915E6+e*(-4.032015E7+e*(-1.6934463E8+e*(-4.1250615E8+e*(-6.0108039E8+e*(-5.3036505E8+e*(-2.8224105E8+e*(-8.870433E7+e*(-1.577745E7+e*(-1.472562E6+e*(-6.293E4+e*(-9.3E2-2.0*e))))))))))))))+3.1E1*q*(6.6E1+e*(1.0912E4+e*(4.74672E5+e*(8.544096E6+e*(7.71342E7+e*(3.8707344E8+e*(1.14633288E9+e*(2.07431664E9+e*(2.33360622E9+e*(1.6376184E9+e*(7.0963464E8+e*(1.8512208E8+e*(2.7768312E7+e*(2.215136E6+e*(8.184E4+e*(1.056E3+2.0*e)))))))))))))))+3.3E1*(-7.0E1+e*(-1.309E4+e*(-6.49264E5+e*(-1.344904E7+e*(-1.4121492E8+e*(-8.344518E8+e*(-2.9526756E9+e*(-6.49588632E9+e*(-9.0751353E9+e*(-8.1198579E9+e*(-4.6399188E9+e*(-1.6689036E9+e*(-3.67158792E8+e*(-4.707164E7+e*(-3.24632E6+e*(-1.0472E5+e*(-1.19E3-2.0*e)))))))))))))))))*q)))))))))))))))))  # noqa: E501
    # fmt: on
    b = _ONE_OVER_SQRT_TWO_PI * math.exp(-0.5 * (h * h + t * t)) * (t / r) * asymptotic_expansion_sum
    return abs(max(b, 0.0))


@njit(cache=True)
def _small_t_expansion_of_normalised_black_call(h, t):
    """Region 2 (``s/2 < 2 eps^(1/16)``): a 12th-order expansion in ``t`` of ``Y(h+t) - Y(h-t)``."""
    a = 1 + h * (0.5 * _SQRT_TWO_PI) * erfcx_cody(-_ONE_OVER_SQRT_TWO * h)
    w = t * t
    h2 = h * h
    # fmt: off
    expansion = 2*t*(a+w*((-1+3*a+a*h2)/6+w*((-7+15*a+h2*(-1+10*a+a*h2))/120+w*((-57+105*a+h2*(-18+105*a+h2*(-1+21*a+a*h2)))/5040+w*((-561+945*a+h2*(-285+1260*a+h2*(-33+378*a+h2*(-1+36*a+a*h2))))/362880+w*((-6555+10395*a+h2*(-4680+17325*a+h2*(-840+6930*a+h2*(-52+990*a+h2*(-1+55*a+a*h2)))))/39916800+((-89055+135135*a+h2*(-82845+270270*a+h2*(-20370+135135*a+h2*(-1926+25740*a+h2*(-75+2145*a+h2*(-1+78*a+a*h2))))))*w)/6227020800.0))))))  # noqa: E501
    # fmt: on
    b = _ONE_OVER_SQRT_TWO_PI * math.exp(-0.5 * (h * h + t * t)) * expansion
    return abs(max(b, 0.0))


@njit(cache=True)
def _normalised_black_call_using_norm_cdf(x, s):
    """Region 3 (``b`` dominated by its first term): the two CDFs as they are."""
    h = x / s
    t = 0.5 * s
    b_max = math.exp(0.5 * x)
    b = norm_cdf(h + t) * b_max - norm_cdf(h - t) / b_max
    return abs(max(b, 0.0))


@njit(cache=True)
def _normalised_black_call_using_erfcx(h, t):
    """Region 4: ``b = exp(-(h^2+t^2)/2) [erfcx(-(h+t)/sqrt2) - erfcx(-(h-t)/sqrt2)] / 2``."""
    b = (
        0.5
        * math.exp(-0.5 * (h * h + t * t))
        * (erfcx_cody(-_ONE_OVER_SQRT_TWO * (h + t)) - erfcx_cody(-_ONE_OVER_SQRT_TWO * (h - t)))
    )
    return abs(max(b, 0.0))


@njit(cache=True)
def _normalised_black_call_otm(x, s):
    """``b(x, s)`` for ``x <= 0`` (out of the money)."""
    if s <= 0:
        return 0.0
    if x < s * _ASYMPTOTIC_THRESHOLD and 0.5 * s * s + x < s * (_SMALL_T_THRESHOLD + _ASYMPTOTIC_THRESHOLD):
        return _asymptotic_expansion_of_normalised_black_call(x / s, 0.5 * s)
    if 0.5 * s < _SMALL_T_THRESHOLD:
        return _small_t_expansion_of_normalised_black_call(x / s, 0.5 * s)
    if x + 0.5 * s * s > s * 0.85:
        return _normalised_black_call_using_norm_cdf(x, s)
    return _normalised_black_call_using_erfcx(x / s, 0.5 * s)


@njit(cache=True)
def _normalised_black_call(x, s):
    if x > 0:
        return _normalised_intrinsic_call(x) + _normalised_black_call_otm(-x, s)
    return _normalised_black_call_otm(x, s)


@njit(cache=True)
def _normalised_vega(x, s):
    ax = abs(x)
    if ax <= 0:
        return _ONE_OVER_SQRT_TWO_PI * math.exp(-0.125 * s * s)
    if s <= 0 or s <= ax * _SQRT_DBL_MIN:
        return 0.0
    return _ONE_OVER_SQRT_TWO_PI * math.exp(-0.5 * ((x / s) * (x / s) + (0.5 * s) * (0.5 * s)))


# ---------------------------------------------------------------------------------------------
# Let's Be Rational: the normalised implied volatility s of an out-of-the-money call price beta


@njit(cache=True, inline="always")
def _householder_factor(newton, halley, hh3):
    return (1 + 0.5 * halley * newton) / (1 + newton * (halley + hh3 * newton / 6))


@njit(cache=True)
def _f_lower_map_and_derivatives(x, s):
    ax = abs(x)
    z = _SQRT_ONE_OVER_THREE * ax / s
    y = z * z
    s2 = s * s
    phi_cdf = norm_cdf(-z)
    phi = _norm_pdf(z)
    fpp = (
        _PI_OVER_SIX
        * y
        / (s2 * s)
        * phi_cdf
        * (8 * _SQRT_THREE * s * ax + (3 * s2 * (s2 - 8) - 8 * x * x) * phi_cdf / phi)
        * math.exp(2 * y + 0.25 * s2)
    )
    phi2 = phi_cdf * phi_cdf
    fp = _TWO_PI * y * phi2 * math.exp(y + 0.125 * s * s)
    f = _TWO_PI_OVER_SQRT_TWENTY_SEVEN * ax * (phi2 * phi_cdf)
    return f, fp, fpp


@njit(cache=True)
def _f_upper_map_and_derivatives(x, s):
    f = norm_cdf(-0.5 * s)
    if x == 0:
        return f, -0.5, 0.0
    w = (x / s) * (x / s)
    fp = -0.5 * math.exp(0.5 * w)
    fpp = _SQRT_PI_OVER_TWO * math.exp(w + 0.125 * s * s) * w / s
    return f, fp, fpp


@njit(cache=True)
def _inverse_f_lower_map(x, f):
    if f == 0:
        return 0.0
    return abs(x / (_SQRT_THREE * _inverse_norm_cdf((f / (_TWO_PI_OVER_SQRT_TWENTY_SEVEN * abs(x))) ** (1.0 / 3.0))))


@njit(cache=True)
def _normalised_implied_volatility_otm(beta, x):
    """``s`` with ``b(x, s) = beta`` for ``x <= 0``; ``inf`` when ``beta >= b_max``, 0 when ``beta <= 0``."""
    if beta <= 0:
        return 0.0
    b_max = math.exp(0.5 * x)
    if beta >= b_max:
        return math.inf
    iterations = 0
    direction_reversal_count = 0
    f = -_DBL_MAX
    s = -_DBL_MAX
    ds = s
    ds_previous = 0.0
    s_left = _DBL_MIN
    s_right = _DBL_MAX
    s_c = math.sqrt(abs(2 * x))
    b_c = _normalised_black_call(x, s_c)
    v_c = _normalised_vega(x, s_c)
    if beta < b_c:
        s_l = s_c - b_c / v_c
        b_l = _normalised_black_call(x, s_l)
        if beta < b_l:
            # lowest segment: objective 1/ln(b) - 1/ln(beta)
            f_lower_map_l, d_f_lower, d2_f_lower = _f_lower_map_and_derivatives(x, s_l)
            r_ll = _convex_control_parameter_right(0.0, b_l, 0.0, f_lower_map_l, 1.0, d_f_lower, d2_f_lower, True)
            f = _rational_cubic_interpolation(beta, 0.0, b_l, 0.0, f_lower_map_l, 1.0, d_f_lower, r_ll)
            if not (f > 0):
                t = beta / b_l
                f = (f_lower_map_l * t + b_l * (1 - t)) * t
            s = _inverse_f_lower_map(x, f)
            s_right = s_l
            ln_beta = math.log(beta)
            while iterations < _ITERATIONS and abs(ds) > _DBL_EPSILON * s:
                if ds * ds_previous < 0:
                    direction_reversal_count += 1
                if iterations > 0 and (direction_reversal_count == 3 or not (s > s_left and s < s_right)):
                    s = 0.5 * (s_left + s_right)
                    if s_right - s_left <= _DBL_EPSILON * s:
                        break
                    direction_reversal_count = 0
                    ds = 0.0
                ds_previous = ds
                b = _normalised_black_call(x, s)
                bp = _normalised_vega(x, s)
                if b > beta and s < s_right:
                    s_right = s
                elif b < beta and s > s_left:
                    s_left = s
                if b <= 0 or bp <= 0:
                    ds = 0.5 * (s_left + s_right) - s
                else:
                    ln_b = math.log(b)
                    bpob = bp / b
                    h = x / s
                    b_halley = h * h / s - s / 4
                    newton = (ln_beta - ln_b) * ln_b / ln_beta / bpob
                    halley = b_halley - bpob * (1 + 2 / ln_b)
                    b_hh3 = b_halley * b_halley - 3 * (h / s) * (h / s) - 0.25
                    hh3 = (
                        b_hh3 + 2 * bpob * bpob * (1 + 3 / ln_b * (1 + 1 / ln_b)) - 3 * b_halley * bpob * (1 + 2 / ln_b)
                    )
                    ds = newton * _householder_factor(newton, halley, hh3)
                ds = max(-0.5 * s, ds)
                s += ds
                iterations += 1
            return s
        v_l = _normalised_vega(x, s_l)
        r_lm = _convex_control_parameter_right(b_l, b_c, s_l, s_c, 1 / v_l, 1 / v_c, 0.0, False)
        s = _rational_cubic_interpolation(beta, b_l, b_c, s_l, s_c, 1 / v_l, 1 / v_c, r_lm)
        s_left = s_l
        s_right = s_c
    else:
        s_h = s_c + (b_max - b_c) / v_c if v_c > _DBL_MIN else s_c
        b_h = _normalised_black_call(x, s_h)
        if beta <= b_h:
            v_h = _normalised_vega(x, s_h)
            r_hm = _convex_control_parameter_left(b_c, b_h, s_c, s_h, 1 / v_c, 1 / v_h, 0.0, False)
            s = _rational_cubic_interpolation(beta, b_c, b_h, s_c, s_h, 1 / v_c, 1 / v_h, r_hm)
            s_left = s_c
            s_right = s_h
        else:
            # upper segment: objective ln(b_max - beta) - ln(b_max - b)
            f_upper_map_h, d_f_upper, d2_f_upper = _f_upper_map_and_derivatives(x, s_h)
            if d2_f_upper > -_SQRT_DBL_MAX and d2_f_upper < _SQRT_DBL_MAX:
                r_hh = _convex_control_parameter_left(b_h, b_max, f_upper_map_h, 0.0, d_f_upper, -0.5, d2_f_upper, True)
                f = _rational_cubic_interpolation(beta, b_h, b_max, f_upper_map_h, 0.0, d_f_upper, -0.5, r_hh)
            if f <= 0:
                h = b_max - b_h
                t = (beta - b_h) / h
                f = (f_upper_map_h * (1 - t) + 0.5 * h * t) * (1 - t)
            s = -2.0 * _inverse_norm_cdf(f)
            s_left = s_h
            if beta > 0.5 * b_max:
                while iterations < _ITERATIONS and abs(ds) > _DBL_EPSILON * s:
                    if ds * ds_previous < 0:
                        direction_reversal_count += 1
                    if iterations > 0 and (direction_reversal_count == 3 or not (s > s_left and s < s_right)):
                        s = 0.5 * (s_left + s_right)
                        if s_right - s_left <= _DBL_EPSILON * s:
                            break
                        direction_reversal_count = 0
                        ds = 0.0
                    ds_previous = ds
                    b = _normalised_black_call(x, s)
                    bp = _normalised_vega(x, s)
                    if b > beta and s < s_right:
                        s_right = s
                    elif b < beta and s > s_left:
                        s_left = s
                    if b >= b_max or bp <= _DBL_MIN:
                        ds = 0.5 * (s_left + s_right) - s
                    else:
                        b_max_minus_b = b_max - b
                        g = math.log((b_max - beta) / b_max_minus_b)
                        gp = bp / b_max_minus_b
                        b_halley = (x / s) * (x / s) / s - s / 4
                        b_hh3 = b_halley * b_halley - 3 * (x / (s * s)) * (x / (s * s)) - 0.25
                        newton = -g / gp
                        halley = b_halley + gp
                        hh3 = b_hh3 + gp * (2 * gp + 3 * b_halley)
                        ds = newton * _householder_factor(newton, halley, hh3)
                    ds = max(-0.5 * s, ds)
                    s += ds
                    iterations += 1
                return s
    # the two middle segments: objective b - beta
    while iterations < _ITERATIONS and abs(ds) > _DBL_EPSILON * s:
        if ds * ds_previous < 0:
            direction_reversal_count += 1
        if iterations > 0 and (direction_reversal_count == 3 or not (s > s_left and s < s_right)):
            s = 0.5 * (s_left + s_right)
            if s_right - s_left <= _DBL_EPSILON * s:
                break
            direction_reversal_count = 0
            ds = 0.0
        ds_previous = ds
        b = _normalised_black_call(x, s)
        bp = _normalised_vega(x, s)
        if b > beta and s < s_right:
            s_right = s
        elif b < beta and s > s_left:
            s_left = s
        newton = (beta - b) / bp
        halley = (x / s) * (x / s) / s - s / 4
        hh3 = halley * halley - 3 * (x / (s * s)) * (x / (s * s)) - 0.25
        ds = max(-0.5 * s, newton * _householder_factor(newton, halley, hh3))
        s += ds
        iterations += 1
    return s


# ---------------------------------------------------------------------------------------------
# One quote


@njit(cache=True)
def _implied_volatility_one(price, spot, strike, t, r, q, is_call):
    """(sigma, reason) of one quote; sigma is NaN unless reason is :data:`IV_OK`."""
    if not (
        math.isfinite(price)
        and math.isfinite(spot)
        and math.isfinite(strike)
        and math.isfinite(t)
        and math.isfinite(r)
        and math.isfinite(q)
    ):
        return math.nan, IV_MISSING_INPUT
    if price <= 0 or spot <= 0 or strike <= 0 or t <= 0:
        return math.nan, IV_NONPOSITIVE_INPUT
    # undiscounted price against the forward: Black's problem (as vollib's implied_volatility)
    undiscounted = price / math.exp(-r * t)
    forward = spot * math.exp((r - q) * t)
    if is_call:
        intrinsic = abs(max(forward - strike, 0.0))
        upper = forward
    else:
        intrinsic = abs(max(strike - forward, 0.0))
        upper = strike
    if undiscounted < intrinsic:
        return math.nan, IV_BELOW_INTRINSIC
    if undiscounted >= upper:
        return math.nan, IV_ABOVE_MAXIMUM
    x = math.log(forward / strike)
    theta = 1.0 if is_call else -1.0
    if theta * x > 0:
        # in the money: the out-of-the-money option of the other kind, by put-call parity
        undiscounted = abs(max(undiscounted - intrinsic, 0.0))
        theta = -theta
    if theta < 0:
        x = -x
    beta = undiscounted / (math.sqrt(forward) * math.sqrt(strike))
    if beta <= 0:
        return math.nan, IV_NO_TIME_VALUE
    s = _normalised_implied_volatility_otm(beta, x)
    if s == math.inf:
        return math.nan, IV_ABOVE_MAXIMUM
    if s == 0:
        return math.nan, IV_NO_TIME_VALUE
    if not (s > 0 and math.isfinite(s)):
        return math.nan, IV_UNRESOLVED
    return s / math.sqrt(t), IV_OK


@njit(cache=True)
def _bsm_price_one(spot, strike, t, r, q, sigma, is_call):
    """The BSM price through the normalised Black function (accurate in the tails)."""
    forward = spot * math.exp((r - q) * t)
    x = math.log(forward / strike)
    s = sigma * math.sqrt(t)
    theta = 1.0 if is_call else -1.0
    intrinsic = abs(max(theta * (forward - strike), 0.0))
    xo = -abs(x)  # the out-of-the-money option of the pair has the same time value
    undiscounted = intrinsic + math.sqrt(forward) * math.sqrt(strike) * _normalised_black_call_otm(xo, s)
    return undiscounted * math.exp(-r * t)


# ---------------------------------------------------------------------------------------------
# Kernels over chains


@njit(cache=True, parallel=True, error_model="numpy")
def implied_volatility_kernel(price, spot, strike, t, r, q, is_call, iv, reason):
    """Implied volatilities of quotes ``i`` into ``iv[i]`` and ``reason[i]``; a quote whose
    ``reason`` is already non-zero on entry (e.g. :data:`IV_CROSSED`) keeps it and gets NaN."""
    for i in prange(price.size):
        if reason[i] != IV_OK:
            iv[i] = math.nan
            continue
        sigma, why = _implied_volatility_one(price[i], spot[i], strike[i], t[i], r[i], q[i], is_call[i])
        iv[i] = sigma
        reason[i] = why


@njit(cache=True, parallel=True, error_model="numpy")
def greeks_kernel(spot, strike, t, r, q, is_call, iv, delta, gamma, vega, theta, rho):
    """Analytic BSM greeks at volatility ``iv`` (per unit: see the module's docstring); NaN where
    ``iv`` is NaN."""
    for i in prange(spot.size):
        sigma = iv[i]
        if not (sigma > 0 and math.isfinite(sigma)):
            delta[i] = math.nan
            gamma[i] = math.nan
            vega[i] = math.nan
            theta[i] = math.nan
            rho[i] = math.nan
            continue
        s_i, k_i, t_i, r_i, q_i = spot[i], strike[i], t[i], r[i], q[i]
        sqrt_t = math.sqrt(t_i)
        vol_t = sigma * sqrt_t
        d1 = (math.log(s_i / k_i) + (r_i - q_i + 0.5 * sigma * sigma) * t_i) / vol_t
        d2 = d1 - vol_t
        spot_df = s_i * math.exp(-q_i * t_i)
        strike_df = k_i * math.exp(-r_i * t_i)
        pdf_d1 = _norm_pdf(d1)
        decay = -spot_df * pdf_d1 * sigma / (2 * sqrt_t)
        gamma[i] = spot_df * pdf_d1 / (s_i * s_i * vol_t)
        vega[i] = spot_df * pdf_d1 * sqrt_t
        if is_call[i]:
            n_d1 = norm_cdf(d1)
            n_d2 = norm_cdf(d2)
            delta[i] = math.exp(-q_i * t_i) * n_d1
            theta[i] = decay - r_i * strike_df * n_d2 + q_i * spot_df * n_d1
            rho[i] = strike_df * t_i * n_d2
        else:
            n_d1 = norm_cdf(-d1)
            n_d2 = norm_cdf(-d2)
            delta[i] = -math.exp(-q_i * t_i) * n_d1
            theta[i] = decay + r_i * strike_df * n_d2 - q_i * spot_df * n_d1
            rho[i] = -strike_df * t_i * n_d2


@njit(cache=True, parallel=True, error_model="numpy")
def bsm_price_kernel(spot, strike, t, r, q, sigma, is_call, out):
    """BSM prices of quotes at volatilities ``sigma`` (the inverse of :func:`implied_volatility_kernel`)."""
    for i in prange(spot.size):
        out[i] = _bsm_price_one(spot[i], strike[i], t[i], r[i], q[i], sigma[i], is_call[i])


# ---------------------------------------------------------------------------------------------
# The Python face: arrays in, arrays out


@dataclass(frozen=True)
class OptionGreeks:
    """Implied volatility, its reason code and the greeks of each quote (NaN where ``reason != 0``)."""

    iv: np.ndarray
    reason: np.ndarray
    delta: np.ndarray
    gamma: np.ndarray
    vega: np.ndarray
    theta: np.ndarray
    rho: np.ndarray


def _as_f64(name: str, value: np.ndarray | float, n: int) -> np.ndarray:
    arr = np.ascontiguousarray(np.broadcast_to(np.asarray(value, dtype=np.float64), (n,)))
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    return arr


def _run_parallel(threads: int | None, n: int, call: Callable[[], None]) -> None:
    """``call()`` with ``threads`` numba threads (default: numba's current count) and quotes handed
    out in small chunks, so a thread descheduled by other load does not hold back the whole call."""
    previous_threads = numba.get_num_threads()
    if threads is not None:
        most = int(numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]
        if not 1 <= threads <= most:
            raise RequestError(f"threads={threads} is not allowed: use 1..{most} (NUMBA_NUM_THREADS bounds it)")
        numba.set_num_threads(threads)
    previous_chunk = numba.set_parallel_chunksize(max(256, n // (16 * numba.get_num_threads())))
    try:
        call()
    finally:
        numba.set_parallel_chunksize(previous_chunk)
        numba.set_num_threads(previous_threads)


def _chain_inputs(
    price: np.ndarray,
    spot: np.ndarray | float,
    strike: np.ndarray,
    t: np.ndarray | float,
    r: np.ndarray | float,
    q: np.ndarray | float,
    is_call: np.ndarray | bool,
) -> tuple[np.ndarray, ...]:
    n = np.asarray(price).size
    flags = np.ascontiguousarray(np.broadcast_to(np.asarray(is_call, dtype=np.bool_), (n,)))
    return (
        _as_f64("price", price, n),
        _as_f64("spot", spot, n),
        _as_f64("strike", strike, n),
        _as_f64("t", t, n),
        _as_f64("r", r, n),
        _as_f64("q", q, n),
        flags,
    )


def implied_volatility(
    price: np.ndarray,
    spot: np.ndarray | float,
    strike: np.ndarray,
    t: np.ndarray | float,
    r: np.ndarray | float,
    q: np.ndarray | float,
    is_call: np.ndarray | bool,
    *,
    reason: np.ndarray | None = None,
    threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(iv, reason)`` of each quote: spot, time, rate, yield and kind may be scalars shared by the
    chain. ``reason`` on entry (int8, e.g. from :func:`mid_prices`) marks quotes already rejected."""
    p, s, k, tt, rr, qq, flags = _chain_inputs(price, spot, strike, t, r, q, is_call)
    n = p.size
    why = np.zeros(n, dtype=np.int8) if reason is None else np.array(reason, dtype=np.int8, copy=True)
    if why.shape != (n,):
        raise ValueError(f"reason has shape {why.shape}, the quotes ({n},)")
    iv = np.empty(n)
    _run_parallel(threads, n, lambda: implied_volatility_kernel(p, s, k, tt, rr, qq, flags, iv, why))
    return iv, why


def option_greeks(
    price: np.ndarray,
    spot: np.ndarray | float,
    strike: np.ndarray,
    t: np.ndarray | float,
    r: np.ndarray | float,
    q: np.ndarray | float,
    is_call: np.ndarray | bool,
    *,
    reason: np.ndarray | None = None,
    threads: int | None = None,
) -> OptionGreeks:
    """Implied volatility and the greeks at it, for every quote of a chain (or many chains)."""
    iv, why = implied_volatility(price, spot, strike, t, r, q, is_call, reason=reason, threads=threads)
    _, s, k, tt, rr, qq, flags = _chain_inputs(price, spot, strike, t, r, q, is_call)
    n = iv.size
    delta, gamma, vega, theta, rho = (np.empty(n) for _ in range(5))
    _run_parallel(threads, n, lambda: greeks_kernel(s, k, tt, rr, qq, flags, iv, delta, gamma, vega, theta, rho))
    return OptionGreeks(iv=iv, reason=why, delta=delta, gamma=gamma, vega=vega, theta=theta, rho=rho)


def bsm_price(
    spot: np.ndarray | float,
    strike: np.ndarray,
    t: np.ndarray | float,
    r: np.ndarray | float,
    q: np.ndarray | float,
    sigma: np.ndarray | float,
    is_call: np.ndarray | bool,
    *,
    threads: int | None = None,
) -> np.ndarray:
    """Black-Scholes-Merton prices (the forward problem: synthetic chains, finite differences)."""
    n = np.asarray(strike).size
    k = _as_f64("strike", strike, n)
    _, s, _, tt, rr, qq, flags = _chain_inputs(k, spot, k, t, r, q, is_call)
    vol = _as_f64("sigma", sigma, n)
    out = np.empty(n)
    _run_parallel(threads, n, lambda: bsm_price_kernel(s, k, tt, rr, qq, vol, flags, out))
    return out


def mid_prices(bid: np.ndarray, ask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(mid, reason)`` of bid/ask quotes: a crossed quote (bid above ask) gets NaN and
    :data:`IV_CROSSED`, which :func:`implied_volatility` keeps."""
    b = np.asarray(bid, dtype=np.float64)
    a = np.asarray(ask, dtype=np.float64)
    crossed = b > a
    mid = np.where(crossed, np.nan, 0.5 * (b + a))
    return mid, np.where(crossed, IV_CROSSED, IV_OK).astype(np.int8)
