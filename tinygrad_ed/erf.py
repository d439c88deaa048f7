"""The error function erf(x) = 2/sqrt(pi) * integral from 0 to x of exp(-t^2) dt, written against `xp`.

GELU needs erf (exact GELU is x * (1 + erf(x / sqrt(2))) / 2), and neither numpy nor cupy has one: scipy
is not a dependency. Only ufuncs that numpy and cupy share are used here (abs, exp, where, bitwise_or...),
so the same code runs on both.

There are two versions, because the two places GELU runs want different things:
  erf_accurate  float64, accurate to a few ulp (|error| ~ 1e-16). Gradient checks compare an analytic
                gradient with a finite difference in float64; an erf good to only 1e-7 would put an
                error of that size into every check and hide (or fake) real bugs.
  erf_fast      float32 throughout, |error| < ~7e-7, in ~19 passes over memory. Training runs in
                float32, where GELU's own rounding noise is of that order, so more accuracy buys nothing, and a
                float64-accurate erf made GELU cost more than a whole training iteration in an earlier
                measurement.
`erf(xp, x)` picks one by dtype: float64 -> erf_accurate, float32 / float16 -> erf_fast.
"""
import numpy as np

# ----------------------------------------------------------------------------------------------------------
# erf_accurate: W. J. Cody's rational Chebyshev approximations
#   W. J. Cody, "Rational Chebyshev approximations for the error function", Math. Comp. 23 (1969) 631-637.
# Cody splits |x| into three intervals and, on each, approximates the smooth part of erf or erfc by a ratio
# of polynomials whose coefficients were chosen to minimise the maximum relative error (about 1e-18, below
# float64 rounding). Each tuple below lists coefficients highest degree first, for Horner's rule.

# 0 <= |x| <= 0.5: erf is odd and close to 2x/sqrt(pi), so erf(x) = x * N(x^2) / D(x^2) (degree 4 / 4).
_SMALL_NUM = (1.85777706184603153e-1, 3.16112374387056560e0, 1.13864154151050156e2,
              3.77485237685302021e2, 3.20937758913846947e3)
_SMALL_DEN = (1.0, 2.36012909523441209e1, 2.44024637934444173e2, 1.28261652607737228e3,
              2.84423683343917062e3)

# 0.5 < |x| <= 4: erf = 1 - erfc, and erfc(x) = exp(-x^2) * N(x) / D(x) (degree 8 / 8). Taking out the
# exp(-x^2) factor leaves a slowly varying function that a rational fits well.
_MID_NUM = (2.15311535474403846e-8, 5.64188496988670089e-1, 8.88314979438837594e0,
            6.61191906371416295e1, 2.98635138197400131e2, 8.81952221241769090e2,
            1.71204761263407058e3, 2.05107837782607147e3, 1.23033935479799725e3)
_MID_DEN = (1.0, 1.57449261107098347e1, 1.17693950891312499e2, 5.37181101862009858e2,
            1.62138957456669019e3, 3.29079923573345963e3, 4.36261909014324716e3,
            3.43936767414372164e3, 1.23033935480374942e3)

# |x| > 4: the asymptotic form erfc(x) ~ exp(-x^2) / (x sqrt(pi)) * (1 - 1/(2x^2) + ...). Cody writes the
# correction as a rational in z = 1/x^2: erfc(x) = exp(-x^2) / x * (1/sqrt(pi) - z * N(z) / D(z)).
_LARGE_NUM = (1.63153871373020978e-2, 3.05326634961232344e-1, 3.60344899949804439e-1,
              1.25781726111229246e-1, 1.60837851487422766e-2, 6.58749161529837803e-4)
_LARGE_DEN = (1.0, 2.56852019228982242e0, 1.87295284992346725e0, 5.27905102951428412e-1,
              6.05183413124413191e-2, 2.33520497626869185e-3)
_INV_SQRT_PI = 5.6418958354775628695e-1

# erfc(5.93) < 2^-54, half an ulp of 1.0, so in float64 erf(x) rounds to exactly +-1 beyond |x| ~ 5.93.
# Clamping |x| at 8 changes no result and keeps x*x finite (no overflow warnings for |x| > 1e154 or inf).
_CLAMP64 = 8.0


def _polyval(coefficients, z):
    """Horner's rule: c0*z^n + c1*z^(n-1) + ... + cn, one multiply-add per coefficient."""
    result = coefficients[0]
    for c in coefficients[1:]:
        result = result * z + c
    return result


def erf_accurate(xp, x):
    """erf computed in float64 to a few ulp, for gradient checks. Any shape; float32/float16 input is
    computed in float64 and cast back; integer input gives float64. erf(+-inf) = +-1, erf(nan) = nan."""
    x = xp.asarray(x)
    out_dtype = x.dtype if x.dtype.kind == "f" else np.dtype(np.float64)
    x = x.astype(np.float64, copy=False)
    a = xp.minimum(xp.abs(x), _CLAMP64)  # erf is odd: work on |x|, put the sign back at the end.
    # Every element is run through all three formulas, each on |x| clipped into its own interval so that
    # none divides by zero or overflows, and `where` keeps the right one. nan survives every clip and
    # every formula, so it comes out as nan.
    s = xp.minimum(a, 0.5)
    s2 = s * s
    erf_small = s * (_polyval(_SMALL_NUM, s2) / _polyval(_SMALL_DEN, s2))
    m = xp.clip(a, 0.5, 4.0)
    # exp(-m*m) is off by the rounding error of m*m (<= 16 * 2^-53 relative at m = 4), but erfc is then
    # tiny (1.5e-8), so the absolute error in erf = 1 - erfc stays far below 1e-16.
    erfc_mid = xp.exp(-m * m) * (_polyval(_MID_NUM, m) / _polyval(_MID_DEN, m))
    g = xp.maximum(a, 4.0)
    z = 1.0 / (g * g)
    erfc_large = xp.exp(-g * g) / g * (_INV_SQRT_PI - z * (_polyval(_LARGE_NUM, z) / _polyval(_LARGE_DEN, z)))
    erf_abs = xp.where(a <= 0.5, erf_small, 1.0 - xp.where(a <= 4.0, erfc_mid, erfc_large))
    return xp.copysign(erf_abs, x).astype(out_dtype, copy=False)


# ----------------------------------------------------------------------------------------------------------
# erf_fast: Abramowitz & Stegun 7.1.26 (after C. Hastings, "Approximations for Digital Computers", 1955)
#   erf(x) = 1 - (a1 t + a2 t^2 + a3 t^3 + a4 t^4 + a5 t^5) exp(-x^2),  t = 1 / (1 + p x),  x >= 0,
# with |error| <= 1.5e-7 on all of x >= 0. Like Cody's mid-range formula it factors out exp(-x^2), leaving
# a function of t in (0, 1] that a short polynomial fits. In float32 the rounding adds up to ~5e-7 near
# x = 0, where the terms a_k t^k (up to 1.45 in size) cancel down to a sum close to 1 and 1 - sum cancels
# again; for |x| > 1 the total stays below 2e-7.
# To save a pass, t is computed as c / (c + x) with c = 1/p, and the c^k folds into the coefficients:
#   a_k t^k = (a_k c^k) u^k = (a_k / p^k) u^k  with  u = 1 / (c + x).
_P = 0.3275911
_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)  # a1 .. a5
_FAST_COEFFICIENTS = tuple(np.float32(a / _P ** (k + 1)) for k, a in enumerate(_A))  # a_k / p^k
# float32 constants, so that no Python float can promote a float32 array to float64 along the way.
_C32, _ONE32 = np.float32(1.0 / _P), np.float32(1.0)
# Huge |x| needs no clamp: x*x overflows to inf beyond |x| ~ 1.8e19 (an overflow numpy is told to ignore), and
# exp(-inf) = 0, u = 1/(c + inf) = 0 give erf = +-1 exactly; the Gaussian returned beside it is then 0 (and for
# |x| between ~9.4 and ~10.3 a subnormal float32, slower to compute with on x86 but as good as 0 for GELU).
# The sign is put back with integer operations on the float's bits (the sign is the top bit of the 32): numpy's
# copysign and minimum are not vectorised and cost 5 and 4 times a multiply.
_SIGN_BIT = np.uint32(0x80000000)


def erf_fast(xp, x):
    """erf in float32 throughout, |error| < ~7e-7, for training. float16 input is computed in float32 and
    cast back. 19 elementwise passes over memory (exp counts as one), all but three of them in place.
    erf(+-inf) = +-1, erf(nan) = nan."""
    return erf_fast_with_gaussian(xp, x)[0]


def erf_fast_with_gaussian(xp, x):
    """(erf(x), exp(-x²)): erf_fast and the Gaussian it computes on the way, which GELU's backward reuses."""
    x = xp.asarray(x)
    if x.dtype != np.float32:
        y, e = erf_fast_with_gaussian(xp, x.astype(np.float32))
        return y.astype(x.dtype, copy=False), e.astype(x.dtype, copy=False)
    shape, x = x.shape, x.reshape(-1)             # 1-d (a view when contiguous), so that out= always works
    a = xp.abs(x)
    with np.errstate(over="ignore"):              # |x| > 1.8e19: x*x = inf, which is what we want (cupy ignores it)
        e = xp.multiply(a, a)
    xp.negative(e, out=e)
    xp.exp(e, out=e)                              # e = exp(-x^2)
    u = xp.add(a, _C32, out=a)                    # a is not needed any more: reuse it for u
    xp.divide(_ONE32, u, out=u)                   # u = 1 / (c + |x|)
    b1, b2, b3, b4, b5 = _FAST_COEFFICIENTS
    y = xp.multiply(u, b5)                        # Horner: ((((b5 u + b4) u + b3) u + b2) u + b1) u
    for b in (b4, b3, b2, b1):
        xp.add(y, b, out=y)
        xp.multiply(y, u, out=y)
    xp.multiply(y, e, out=y)                      # y = erfc(|x|)
    xp.subtract(_ONE32, y, out=y)                 # erf(|x|) = 1 - erfc(|x|), >= 0: its sign bit is 0
    # erf is odd: erf(x) = copysign(erf(|x|), x), as sign bit of x OR erf(|x|)'s bits; nan stays nan
    sign = xp.bitwise_and(x.view(xp.uint32), _SIGN_BIT, out=u.view(xp.uint32))
    xp.bitwise_or(y.view(xp.uint32), sign, out=y.view(xp.uint32))
    return y.reshape(shape), e.reshape(shape)


def erf_with_gaussian(xp, x):
    """(erf(x), exp(-x²)) elementwise, by dtype as erf() chooses: the fast form shares one exp between the two."""
    x = xp.asarray(x)
    if x.dtype in (np.float32, np.float16):
        return erf_fast_with_gaussian(xp, x)
    return erf_accurate(xp, x), xp.exp(-(x * x))


def erf(xp, x):
    """erf(x) elementwise: erf_fast for float32 / float16 (training, where speed matters), erf_accurate for
    float64 and anything else (gradient checks, where accuracy matters)."""
    x = xp.asarray(x)
    if x.dtype in (np.float32, np.float16):
        return erf_fast(xp, x)
    return erf_accurate(xp, x)
