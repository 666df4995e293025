//! Colour arithmetic: sRGB hex ↔ CIELAB (D65) and colour differences
//! (CIE76 and CIEDE2000).

use crate::error::ContentError;

/// A colour in CIELAB (D65 white point): lightness `l` in 0..=100, `a` and `b`
/// roughly in -128..=128.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lab {
    /// Lightness, 0 (black) to 100 (white).
    pub l: f64,
    /// Green (negative) to red (positive).
    pub a: f64,
    /// Blue (negative) to yellow (positive).
    pub b: f64,
}

/// sRGB component (0..=255) to linear light, precomputed.
fn srgb_to_linear(c: u8) -> f64 {
    let c = f64::from(c) / 255.0;
    if c <= 0.040_45 {
        c / 12.92
    } else {
        ((c + 0.055) / 1.055).powf(2.4)
    }
}

fn linear_to_srgb(c: f64) -> u8 {
    let c = c.clamp(0.0, 1.0);
    let v = if c <= 0.003_130_8 {
        12.92 * c
    } else {
        1.055 * c.powf(1.0 / 2.4) - 0.055
    };
    (v * 255.0).round().clamp(0.0, 255.0) as u8
}

const XN: f64 = 0.950_47;
const YN: f64 = 1.0;
const ZN: f64 = 1.088_83;
const DELTA: f64 = 6.0 / 29.0;

fn f(t: f64) -> f64 {
    if t > DELTA * DELTA * DELTA {
        t.cbrt()
    } else {
        t / (3.0 * DELTA * DELTA) + 4.0 / 29.0
    }
}

fn f_inv(t: f64) -> f64 {
    if t > DELTA {
        t * t * t
    } else {
        3.0 * DELTA * DELTA * (t - 4.0 / 29.0)
    }
}

/// A lookup table from sRGB component to linear light.
pub(crate) struct LinearTable([f64; 256]);

impl LinearTable {
    pub(crate) fn new() -> Self {
        let mut t = [0.0; 256];
        for (i, v) in t.iter_mut().enumerate() {
            *v = srgb_to_linear(i as u8);
        }
        LinearTable(t)
    }

    /// The CIELAB value of an sRGB pixel.
    pub(crate) fn lab(&self, r: u8, g: u8, b: u8) -> Lab {
        let (r, g, b) = (
            self.0[usize::from(r)],
            self.0[usize::from(g)],
            self.0[usize::from(b)],
        );
        let x = 0.412_456_4 * r + 0.357_576_1 * g + 0.180_437_5 * b;
        let y = 0.212_672_9 * r + 0.715_152_2 * g + 0.072_175_0 * b;
        let z = 0.019_333_9 * r + 0.119_192_0 * g + 0.950_304_1 * b;
        let (fx, fy, fz) = (f(x / XN), f(y / YN), f(z / ZN));
        Lab {
            l: 116.0 * fy - 16.0,
            a: 500.0 * (fx - fy),
            b: 200.0 * (fy - fz),
        }
    }
}

impl Lab {
    /// The CIELAB value of an sRGB colour.
    pub fn from_rgb(rgb: [u8; 3]) -> Lab {
        LinearTable::new().lab(rgb[0], rgb[1], rgb[2])
    }

    /// The nearest sRGB colour (out-of-gamut values are clamped).
    pub fn to_rgb(self) -> [u8; 3] {
        let fy = (self.l + 16.0) / 116.0;
        let fx = fy + self.a / 500.0;
        let fz = fy - self.b / 200.0;
        let (x, y, z) = (XN * f_inv(fx), YN * f_inv(fy), ZN * f_inv(fz));
        let r = 3.240_454_2 * x - 1.537_138_5 * y - 0.498_531_4 * z;
        let g = -0.969_266_0 * x + 1.876_010_8 * y + 0.041_556_0 * z;
        let b = 0.055_643_4 * x - 0.204_025_9 * y + 1.057_225_2 * z;
        [linear_to_srgb(r), linear_to_srgb(g), linear_to_srgb(b)]
    }

    /// The CIELAB value of a `#rrggbb` (or `rrggbb`, or `#rgb`) hex colour.
    pub fn from_hex(hex: &str) -> Result<Lab, ContentError> {
        parse_hex(hex).map(Lab::from_rgb)
    }

    /// This colour as lowercase `#rrggbb`.
    pub fn to_hex(self) -> String {
        to_hex(self.to_rgb())
    }
}

/// Parses `#rrggbb`, `rrggbb`, `#rgb` or `rgb` (case-insensitive).
pub fn parse_hex(hex: &str) -> Result<[u8; 3], ContentError> {
    let s = hex.trim();
    let s = s.strip_prefix('#').unwrap_or(s);
    let invalid = || {
        ContentError::Invalid(format!(
            "{hex:?} is not a hex colour: give it as #rrggbb, e.g. #1f3a5f"
        ))
    };
    if !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid());
    }
    let digit = |i: usize| u8::from_str_radix(&s[i..i + 1], 16).map_err(|_| invalid());
    match s.len() {
        6 => {
            let byte = |i: usize| u8::from_str_radix(&s[i..i + 2], 16).map_err(|_| invalid());
            Ok([byte(0)?, byte(2)?, byte(4)?])
        }
        3 => Ok([digit(0)? * 17, digit(1)? * 17, digit(2)? * 17]),
        _ => Err(invalid()),
    }
}

/// `#rrggbb`, lowercase.
pub fn to_hex(rgb: [u8; 3]) -> String {
    format!("#{:02x}{:02x}{:02x}", rgb[0], rgb[1], rgb[2])
}

/// CIE76 colour difference: the Euclidean distance in CIELAB.
pub fn delta_e76(x: Lab, y: Lab) -> f64 {
    ((x.l - y.l).powi(2) + (x.a - y.a).powi(2) + (x.b - y.b).powi(2)).sqrt()
}

/// CIEDE2000 colour difference (kL = kC = kH = 1), after Sharma, Wu and Dalal (2005).
pub fn delta_e2000(x: Lab, y: Lab) -> f64 {
    let pow7 = |v: f64| v.powi(7);
    let c1 = x.a.hypot(x.b);
    let c2 = y.a.hypot(y.b);
    let c_bar = (c1 + c2) / 2.0;
    let g = 0.5 * (1.0 - (pow7(c_bar) / (pow7(c_bar) + pow7(25.0))).sqrt());
    let a1p = (1.0 + g) * x.a;
    let a2p = (1.0 + g) * y.a;
    let c1p = a1p.hypot(x.b);
    let c2p = a2p.hypot(y.b);
    let hue = |b: f64, ap: f64| {
        if b == 0.0 && ap == 0.0 {
            0.0
        } else {
            b.atan2(ap).to_degrees().rem_euclid(360.0)
        }
    };
    let h1p = hue(x.b, a1p);
    let h2p = hue(y.b, a2p);

    let dlp = y.l - x.l;
    let dcp = c2p - c1p;
    let dhp = if c1p * c2p == 0.0 {
        0.0
    } else {
        let d = h2p - h1p;
        if d.abs() <= 180.0 {
            d
        } else if d > 180.0 {
            d - 360.0
        } else {
            d + 360.0
        }
    };
    let d_hp = 2.0 * (c1p * c2p).sqrt() * (dhp / 2.0).to_radians().sin();

    let l_bar = (x.l + y.l) / 2.0;
    let c_bar_p = (c1p + c2p) / 2.0;
    let h_bar_p = if c1p * c2p == 0.0 {
        h1p + h2p
    } else if (h1p - h2p).abs() <= 180.0 {
        (h1p + h2p) / 2.0
    } else if h1p + h2p < 360.0 {
        (h1p + h2p + 360.0) / 2.0
    } else {
        (h1p + h2p - 360.0) / 2.0
    };
    let t = 1.0 - 0.17 * (h_bar_p - 30.0).to_radians().cos()
        + 0.24 * (2.0 * h_bar_p).to_radians().cos()
        + 0.32 * (3.0 * h_bar_p + 6.0).to_radians().cos()
        - 0.20 * (4.0 * h_bar_p - 63.0).to_radians().cos();
    let d_theta = 30.0 * (-((h_bar_p - 275.0) / 25.0).powi(2)).exp();
    let r_c = 2.0 * (pow7(c_bar_p) / (pow7(c_bar_p) + pow7(25.0))).sqrt();
    let s_l = 1.0 + 0.015 * (l_bar - 50.0).powi(2) / (20.0 + (l_bar - 50.0).powi(2)).sqrt();
    let s_c = 1.0 + 0.045 * c_bar_p;
    let s_h = 1.0 + 0.015 * c_bar_p * t;
    let r_t = -(2.0 * d_theta).to_radians().sin() * r_c;
    let (tl, tc, th) = (dlp / s_l, dcp / s_c, d_hp / s_h);
    (tl * tl + tc * tc + th * th + r_t * tc * th)
        .max(0.0)
        .sqrt()
}

/// A swatch packed into one `u64` for the search index: L, a, b and share in
/// 16 bits each.
pub(crate) fn pack(lab: Lab, share: f32) -> u64 {
    let q = |v: f64, lo: f64, hi: f64| -> u64 {
        (((v.clamp(lo, hi) - lo) / (hi - lo)) * 65535.0).round() as u64
    };
    (q(lab.l, 0.0, 100.0) << 48)
        | (q(lab.a, -128.0, 128.0) << 32)
        | (q(lab.b, -128.0, 128.0) << 16)
        | q(f64::from(share), 0.0, 1.0)
}

/// The inverse of [`pack`].
pub(crate) fn unpack(v: u64) -> (Lab, f32) {
    let d = |bits: u64, lo: f64, hi: f64| lo + (bits & 0xffff) as f64 / 65535.0 * (hi - lo);
    (
        Lab {
            l: d(v >> 48, 0.0, 100.0),
            a: d(v >> 32, -128.0, 128.0),
            b: d(v >> 16, -128.0, 128.0),
        },
        d(v, 0.0, 1.0) as f32,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lab(l: f64, a: f64, b: f64) -> Lab {
        Lab { l, a, b }
    }

    #[test]
    fn ciede2000_matches_sharma_reference_pairs() {
        let pairs = [
            (
                lab(50.0, 2.6772, -79.7751),
                lab(50.0, 0.0, -82.7485),
                2.0425,
            ),
            (lab(50.0, 0.0, 0.0), lab(50.0, -1.0, 2.0), 2.3669),
            (lab(50.0, 2.5, 0.0), lab(73.0, 25.0, -18.0), 27.1492),
            (
                lab(60.2574, -34.0099, 36.2677),
                lab(60.4626, -34.1751, 39.4387),
                1.2644,
            ),
            (
                lab(50.0, 3.1571, -77.2803),
                lab(50.0, 0.0, -82.7485),
                2.8615,
            ),
            (
                lab(50.0, 2.8361, -74.0200),
                lab(50.0, 0.0, -82.7485),
                3.4412,
            ),
            (
                lab(50.0, 2.4900, -0.0010),
                lab(50.0, -2.4900, 0.0009),
                7.1792,
            ),
            (
                lab(2.0776, 0.0795, -1.1350),
                lab(0.9033, -0.0636, -0.5514),
                0.9082,
            ),
        ];
        for (x, y, want) in pairs {
            let got = delta_e2000(x, y);
            assert!((got - want).abs() < 1e-4, "{x:?} {y:?}: {got} != {want}");
            assert!((delta_e2000(y, x) - want).abs() < 1e-4);
        }
    }

    #[test]
    fn hex_round_trips_through_lab() {
        for hex in [
            "#1f3a5f", "#d97b4a", "#000000", "#ffffff", "#00ff00", "#7f7f7f",
        ] {
            let l = Lab::from_hex(hex).unwrap();
            assert_eq!(l.to_hex(), hex);
        }
        assert_eq!(parse_hex("FFF").unwrap(), [255, 255, 255]);
        assert!(parse_hex("#12345").is_err());
        assert!(parse_hex("#12345g").is_err());
        assert!(parse_hex("#ééé").is_err());
        let white = Lab::from_hex("#ffffff").unwrap();
        assert!((white.l - 100.0).abs() < 0.01 && white.a.abs() < 0.01 && white.b.abs() < 0.01);
    }

    #[test]
    fn packing_keeps_colours_within_a_tiny_difference() {
        let l = Lab::from_hex("#1f3a5f").unwrap();
        let (back, share) = unpack(pack(l, 0.7));
        assert!(delta_e76(l, back) < 0.01);
        assert!((share - 0.7).abs() < 1e-4);
    }
}
