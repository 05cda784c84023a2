"""Text rendering for the terminal: tables, sparklines and heatmaps of log10 norms.

Everything here returns strings (nothing is printed), so the same output can go to a
terminal, a log file or a test.  Unicode block characters are used when the output
encoding can show them, plain ASCII otherwise.
"""
import math
import os
import sys

SPARK_UNICODE = "▁▂▃▄▅▆▇█"
SPARK_ASCII = "_.-:=+*#"
SHADE_UNICODE = " ░▒▓█"
SHADE_ASCII = " .:*#"
MISSING = "·"


def supports_unicode(stream=None):
    """True if ``stream`` (default stdout) can encode the block characters."""
    stream = stream or sys.stdout
    enc = getattr(stream, "encoding", None) or ""
    try:
        (SPARK_UNICODE + SHADE_UNICODE + MISSING + "×").encode(enc or "ascii")
        return True
    except (LookupError, UnicodeEncodeError):
        return False


def use_color(stream=None):
    """Colour only on a terminal, and never when NO_COLOR is set."""
    stream = stream or sys.stdout
    if os.environ.get("NO_COLOR"):
        return False
    return hasattr(stream, "isatty") and stream.isatty() and os.environ.get("TERM", "") != "dumb"


def format_table(headers, rows, align=None, sep="  "):
    """Columns padded to their widest cell.

    ``align`` is a string with one character per column: ``l`` (left), ``r`` (right);
    spaces or a missing entry mean left.
    """
    ncol = len(headers)
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] + [""] * (ncol - len(row)) for row in rows]
    widths = [max(len(r[k]) for r in cells) for k in range(ncol)]
    align = (align or "").replace(" ", "")
    lines = []
    for i, r in enumerate(cells):
        parts = []
        for k in range(ncol):
            a = align[k] if k < len(align) else "l"
            parts.append(r[k].rjust(widths[k]) if a == "r" else r[k].ljust(widths[k]))
        lines.append(sep.join(parts).rstrip())
        if i == 0:
            lines.append(sep.join("-" * w for w in widths))
    return "\n".join(lines)


def _finite(v):
    return v is not None and not (isinstance(v, float) and (math.isnan(v) or math.isinf(v)))


def sparkline(values, lo=None, hi=None, width=None, unicode=None):
    """One character per value, from the lowest block (``lo``) to the full block (``hi``).

    ``values`` are typically log10 norms.  -inf/NaN/None (a gradient that is exactly
    zero) are drawn as ``·``.  With ``width`` the values are averaged into that many
    bins first (NaN-aware).
    """
    unicode = supports_unicode() if unicode is None else unicode
    chars = SPARK_UNICODE if unicode else SPARK_ASCII
    missing = MISSING if unicode else " "
    vals = list(values)
    if width is not None and len(vals) > width:
        vals = bin_values(vals, width)
    fin = [v for v in vals if _finite(v)]
    if not fin:
        return missing * len(vals)
    lo = min(fin) if lo is None else lo
    hi = max(fin) if hi is None else hi
    out = []
    for v in vals:
        if not _finite(v):
            out.append(chars[-1] if (v is not None and v == math.inf) else missing)
            continue
        if hi <= lo:
            k = len(chars) - 1
        else:
            k = int(round((min(max(v, lo), hi) - lo) / (hi - lo) * (len(chars) - 1)))
        out.append(chars[k])
    return "".join(out)


def bin_values(values, width):
    """Average ``values`` into ``width`` consecutive bins (ignoring non-finite values; a bin of none is -inf)."""
    n = len(values)
    out = []
    for b in range(width):
        a, z = (b * n) // width, ((b + 1) * n) // width
        chunk = [v for v in values[a:max(z, a + 1)] if _finite(v)]
        out.append(sum(chunk) / len(chunk) if chunk else -math.inf)
    return out


def heatmap(rows, labels=None, lo=None, hi=None, width=60, unicode=None, color=None):
    """Rows of values (e.g. log10 norms of several cells against t) as shaded text, one line per row.

    All rows share one scale (``lo``..``hi``, default the overall finite range), so
    rows can be compared.  With ``color`` (default: when stdout is a terminal) the
    cells use a 256-colour ramp from dark blue (small) to yellow (large).
    """
    unicode = supports_unicode() if unicode is None else unicode
    color = use_color() if color is None else color
    binned = [bin_values(list(r), width) if len(r) > width else list(r) for r in rows]
    fin = [v for r in binned for v in r if _finite(v)]
    if not fin:
        fin = [0.0]
    lo = min(fin) if lo is None else lo
    hi = max(fin) if hi is None else hi
    labels = labels or [""] * len(rows)
    lw = max(len(l) for l in labels) if labels else 0
    shades = SHADE_UNICODE if unicode else SHADE_ASCII
    ramp = [17, 18, 19, 20, 25, 31, 37, 43, 49, 113, 149, 185, 221, 226]
    lines = []
    for lab, r in zip(labels, binned):
        cells = []
        for v in r:
            if not _finite(v):
                cells.append(MISSING if unicode else " ")
                continue
            f = 1.0 if hi <= lo else (min(max(v, lo), hi) - lo) / (hi - lo)
            if color:
                cells.append("\x1b[48;5;%dm \x1b[0m" % ramp[int(round(f * (len(ramp) - 1)))])
            else:
                cells.append(shades[max(1, int(round(f * (len(shades) - 1))))])
        lines.append("%s |%s|" % (lab.rjust(lw), "".join(cells)))
    return "\n".join(lines)


class Progress:
    """A progress display: tqdm when installed and the output is a terminal, otherwise quiet.

    ``Progress(total, desc)`` is used as a context manager; ``update(n, desc=None, **postfix)``
    advances it (``desc`` replaces the description shown).  With ``enabled=False`` it
    does nothing at all.  With ``lines=True``, when no live bar can be shown (no tqdm,
    or the stream is not a terminal) every update writes one line ``[n/total] desc``
    to the stream instead of staying quiet: for long runs whose log is read later.
    """

    def __init__(self, total, desc="", enabled=True, stream=None, lines=False):
        self.total, self.desc = total, desc
        self._bar = None
        self.n = 0
        self.stream = stream or sys.stderr
        self.enabled = bool(enabled)
        tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        if enabled and tty:
            try:
                from tqdm import tqdm

                self._bar = tqdm(total=total, desc=desc, file=self.stream, leave=False, dynamic_ncols=True)
            except ImportError:
                self._bar = None
        self.lines = self.enabled and lines and self._bar is None

    def update(self, n=1, desc=None, **postfix):
        self.n += n
        if desc is not None:
            self.desc = desc
        if self._bar is not None:
            if desc is not None:
                self._bar.set_description(desc[:60], refresh=False)
            if postfix:
                self._bar.set_postfix(postfix, refresh=False)
            self._bar.update(n)
        elif self.lines:
            self.stream.write("[%d/%d] %s\n" % (self.n, self.total, self.desc))
            self.stream.flush()

    def write(self, msg, file=None):
        """Print a line (to ``file``, default stdout) without breaking the bar."""
        if self._bar is not None:
            self._bar.write(msg, file=file)
        else:
            print(msg, file=file)

    def close(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
