"""Barycentric Earth radial velocity (BERV) of an observation, from its FITS header.

Many reductions write the BERV into the header (CARACAL, the ESO DRS); others (HPF) do not.
Then it is computed with astropy (``SkyCoord.radial_velocity_correction``, barycentric kind)
from three facts:

* the time: the middle of the exposure where the header allows (a mid-exposure date such as
  ``DATE-AVG``, HPF's flux-weighted ``JD_FW*`` times, or ``DATE-OBS`` / ``MJD-OBS`` plus half
  the exposure time), else the start;
* the target's coordinates (header keys in several conventions, or ``coordinates=``);
* the observatory: geodetic keys in the header (``GEOLAT``/``GEOLON``/``GEOELEV`` in their ESO
  and CAHA forms), else ``OBSERVAT``, ``TELESCOP`` or ``INSTRUME`` looked up in
  :data:`OBSERVATORIES`, a small table shipped here (astropy's ``EarthLocation.of_site`` would
  need the network), or ``location=``.

No network is used: astropy's automatic IERS downloads are switched off around the
computation, and its bundled tables (extrapolated for recent dates) are enough, since the
BERV changes by less than 1 m/s per second of time error.
"""

from __future__ import annotations

import logging
import math
import re
import warnings
from dataclasses import dataclass

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Observatory:
    """A site: geodetic longitude (deg, east positive), latitude (deg), height (m), and the
    header values (``OBSERVAT``, ``TELESCOP``, ``INSTRUME``) that name it."""

    name: str
    longitude: float
    latitude: float
    height: float
    aliases: tuple[str, ...]

    def location(self):
        """The site as an ``astropy.coordinates.EarthLocation`` (built offline)."""
        import astropy.units as u
        from astropy.coordinates import EarthLocation

        return EarthLocation.from_geodetic(self.longitude * u.deg, self.latitude * u.deg,
                                           self.height * u.m)


#: Sites of the spectrographs M-dwarf work uses most, from the observatories' published
#: geodetic positions.
OBSERVATORIES: tuple[Observatory, ...] = (
    Observatory("Calar Alto", -2.54625, 37.2236, 2168.0,
                ("CALAR ALTO", "CAHA", "CA-3.5", "CA 3.5M", "CARMENES")),
    Observatory("McDonald / HET", -104.014722, 30.681444, 2026.0,
                ("MCDONALD", "HET", "HOBBY-EBERLY", "HPF")),
    Observatory("La Silla", -70.7345, -29.2584, 2400.0,
                ("LA SILLA", "LASILLA", "ESO-3P6", "ESO-2P2", "MPG/ESO-2.2", "HARPS", "FEROS")),
    Observatory("Paranal", -70.4045, -24.6270, 2635.0,
                ("PARANAL", "ESO-VLT", "ESO-VLT-U1", "ESO-VLT-U2", "ESO-VLT-U3", "ESO-VLT-U4",
                 "UVES", "ESPRESSO", "CRIRES")),
    Observatory("Haute-Provence", 5.7133, 43.9308, 650.0,
                ("OHP", "HAUTE-PROVENCE", "OBSERVATOIRE DE HAUTE PROVENCE", "T193", "SOPHIE")),
    Observatory("Mauna Kea", -155.4747, 19.8261, 4160.0,
                ("MAUNA KEA", "MAUNAKEA", "CFHT", "SPIROU", "ESPADONS", "KECK", "KECK I",
                 "KECK II", "SUBARU", "IRD")),
    Observatory("La Palma / TNG", -17.8890, 28.7540, 2387.0,
                ("LA PALMA", "ROQUE DE LOS MUCHACHOS", "ORM", "TNG", "HARPS-N", "HARPN",
                 "GIANO", "GIANO-B")),
    Observatory("Apache Point", -105.8203, 32.7803, 2798.0,
                ("APACHE POINT", "APO", "APO 3.5M", "ARCES")),
    Observatory("Cerro Tololo", -70.8062, -30.1691, 2207.0,
                ("CERRO TOLOLO", "CTIO", "CHIRON")),
)

_TIME_KEYS = ("DATE-AVG", "CAHA INS ICS DATE-AVG", "MJD-MID", "JD-MID")
_EXPOSURE_KEYS = ("EXPTIME", "EXPLNDR", "ITIME", "EXPOSURE", "CAHA DET ITIME")
_GEODETIC_KEYS = (
    ("GEOLON", "GEOLAT", "GEOELEV"),
    ("ESO TEL GEOLON", "ESO TEL GEOLAT", "ESO TEL GEOELEV"),
    ("CAHA TEL GEOLON", "CAHA TEL GEOLAT", "CAHA TEL GEOELEV"),
    ("SITELONG", "SITELAT", "SITEELEV"),
)


def _normalise(value: object) -> str:
    return re.sub(r"\s+", " ", str(value).strip().upper())


def find_observatory(header) -> Observatory | None:
    """The :data:`OBSERVATORIES` entry named by ``OBSERVAT``, ``TELESCOP`` or ``INSTRUME``."""
    for key in ("OBSERVAT", "TELESCOP", "INSTRUME"):
        if key in header:
            value = _normalise(header[key])
            for site in OBSERVATORIES:
                if value in site.aliases:
                    return site
    return None


def header_location(header):
    """``(EarthLocation, description)`` from the header's geodetic keys or its observatory,
    or ``None``."""
    import astropy.units as u
    from astropy.coordinates import EarthLocation

    for lon_key, lat_key, height_key in _GEODETIC_KEYS:
        if lon_key in header and lat_key in header:
            try:
                lon, lat = float(header[lon_key]), float(header[lat_key])
                height = float(header.get(height_key, 0.0))
            except (TypeError, ValueError):
                continue
            return (EarthLocation.from_geodetic(lon * u.deg, lat * u.deg, height * u.m),
                    f"header {lat_key}/{lon_key}")
    site = find_observatory(header)
    if site is not None:
        return site.location(), f"observatory {site.name}"
    return None


def header_coordinates(header):
    """``(SkyCoord, description)`` of the target from the header, or ``None``.

    Tried in order: ``RA_2000``/``DEC_2000`` (hours at HET, else degrees), ``QRA``/``QDEC``
    (HET's queue coordinates, sexagesimal), CAHA's ``CAHA TEL POS SET RA``/``DEC`` (degrees),
    ``OBJRA``/``OBJDEC`` and ``RA``/``DEC``: sexagesimal strings are read as hours and degrees,
    numbers as degrees (the FITS convention), except at HET, whose ``RA`` is in hours.
    """
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    het = _normalise(header.get("TELESCOP", "")) == "HET"
    candidates = [("RA_2000", "DEC_2000", u.hourangle if het else u.deg),
                  ("QRA", "QDEC", None),
                  ("CAHA TEL POS SET RA", "CAHA TEL POS SET DEC", u.deg),
                  ("OBJRA", "OBJDEC", None),
                  ("RA", "DEC", u.hourangle if het else u.deg)]
    for ra_key, dec_key, ra_unit in candidates:
        if ra_key not in header or dec_key not in header:
            continue
        ra, dec = header[ra_key], header[dec_key]
        try:
            if isinstance(ra, str) or isinstance(dec, str):
                text_unit = u.hourangle if ":" in str(ra) or " " in str(ra).strip() else u.deg
                coordinates = SkyCoord(str(ra), str(dec), unit=(text_unit, u.deg))
            else:
                coordinates = SkyCoord(float(ra) * (ra_unit or u.deg), float(dec) * u.deg)
        except (ValueError, TypeError):
            continue
        return coordinates, f"header {ra_key}/{dec_key}"
    return None


def exposure_midpoint(header):
    """``(Time, description)`` of the middle of the exposure, or of its start when the header
    gives no exposure time, or ``None``."""
    from astropy.time import Time

    for key in _TIME_KEYS:
        if key in header:
            value = header[key]
            try:
                if key.startswith("MJD"):
                    return Time(float(value), format="mjd", scale="utc"), f"header {key}"
                if key.startswith("JD"):
                    return Time(float(value), format="jd", scale="utc"), f"header {key}"
                return Time(str(value).replace(" ", "T"), scale="utc"), f"header {key}"
            except ValueError:
                continue
    # HPF: flux-weighted mid-exposure time of each order.
    flux_weighted = [float(v) for k, v in header.items() if re.fullmatch(r"JD_FW\d+", k)
                     and isinstance(v, (int, float))]
    if flux_weighted:
        mean = sum(flux_weighted) / len(flux_weighted)
        return Time(mean, format="jd", scale="utc"), "header JD_FW* (flux-weighted)"
    start = None
    if "DATE-OBS" in header:
        try:
            text = str(header["DATE-OBS"]).strip()
            if "T" not in text and "UT" in header:
                text = f"{text}T{str(header['UT']).strip()}"
            start, what = Time(text, scale="utc"), "DATE-OBS"
        except ValueError:
            start = None
    if start is None and "MJD-OBS" in header:
        try:
            start, what = Time(float(header["MJD-OBS"]), format="mjd", scale="utc"), "MJD-OBS"
        except (TypeError, ValueError):
            start = None
    if start is None:
        return None
    for key in _EXPOSURE_KEYS:
        if key in header:
            try:
                seconds = float(header[key])
            except (TypeError, ValueError):
                continue
            if math.isfinite(seconds) and seconds >= 0:
                import astropy.units as u

                return start + 0.5 * seconds * u.s, f"header {what} + {key}/2"
    return start, f"header {what} (exposure start; no exposure time)"


def compute_berv(coordinates, time, location) -> float:
    """Barycentric correction, km/s, offline: ``SkyCoord.radial_velocity_correction``.

    Args:
        coordinates: ``astropy.coordinates.SkyCoord`` of the target.
        time: ``astropy.time.Time`` (UTC) of the observation.
        location: ``astropy.coordinates.EarthLocation`` of the observatory.

    Returns:
        The BERV in km/s (add it to a measured velocity to get the barycentric one).
    """
    import astropy.units as u
    from astropy.utils import iers

    with (
        iers.conf.set_temp("auto_download", False),
        iers.conf.set_temp("auto_max_age", None),
        warnings.catch_warnings(),
    ):
        # Beyond the bundled IERS tables astropy extrapolates UT1 and warns; a second of UT1
        # moves the BERV by well under 1 m/s.
        warnings.filterwarnings("ignore", module=r"astropy\.(utils\.iers|time|coordinates)")
        correction = coordinates.radial_velocity_correction(
            kind="barycentric", obstime=time, location=location
        )
    return float(correction.to_value(u.km / u.s))


def berv_from_header(header, *, coordinates=None, location=None,
                     source: str = "spectrum") -> tuple[float | None, dict]:
    """The BERV computed from a header (and the given coordinates or location).

    Args:
        header: a FITS header (or any mapping of header cards).
        coordinates: ``SkyCoord`` of the target, overriding the header's.
        location: ``EarthLocation`` of the observatory, overriding the header's.
        source: the file, for messages.

    Returns:
        ``(berv_kms or None, facts)``: ``facts`` says which time, coordinates and site were
        used, or, when the BERV cannot be computed, ``berv_missing``: what was missing.
    """
    facts: dict = {}
    missing = []
    when = exposure_midpoint(header)
    if when is None:
        missing.append("the time (DATE-OBS, MJD-OBS, DATE-AVG ...)")
    if coordinates is None:
        found = header_coordinates(header)
        if found is None:
            missing.append("the target's coordinates (pass coordinates=SkyCoord(...))")
        else:
            coordinates, facts["berv_coordinates"] = found
    else:
        facts["berv_coordinates"] = "given"
    if location is None:
        found = header_location(header)
        if found is None:
            missing.append("the observatory (OBSERVAT/TELESCOP/INSTRUME not in the shipped "
                           "table; pass location=EarthLocation(...))")
        else:
            location, facts["berv_location"] = found
    else:
        facts["berv_location"] = "given"
    if missing:
        return None, {"berv_missing": "; ".join(missing)}
    time, facts["berv_time"] = when
    berv = compute_berv(coordinates, time, location)
    logger.debug("%s: BERV %.4f km/s computed (%s)", source, berv, facts)
    return berv, facts
