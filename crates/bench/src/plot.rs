//! `weft-bench plot`: a PNG beside a bench's table. The bench prints markdown; this reads it back
//! (stdin), takes the first table whose header has the named columns, and draws either lines
//! (`--x` with `--series`: one line per value of the series column, e.g. setup time against
//! endpoints already on the bridge, one line per system) or grouped bars (`--label`: one group
//! per row, one bar per `--y` column, e.g. throughput per path). Text is drawn with DejaVu Sans
//! from the system's fonts (`fonts-dejavu-core`, which `scripts/setup.sh` installs).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use plotters::prelude::*;

/// A markdown table: its header and the rows under it, cells trimmed.
#[derive(Debug, PartialEq)]
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

fn cells(line: &str) -> Option<Vec<String>> {
    let t = line.trim();
    let inner = t.strip_prefix('|')?.strip_suffix('|')?;
    Some(inner.split('|').map(|c| c.trim().to_string()).collect())
}

/// Every markdown table in `text`, in order.
pub fn tables(text: &str) -> Vec<Table> {
    let mut out = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(header) = cells(line) else { continue };
        let is_rule = |l: &&str| cells(l).is_some_and(|c| c.iter().all(|c| !c.is_empty() && c.chars().all(|ch| matches!(ch, '-' | ':'))));
        if !lines.peek().is_some_and(is_rule) {
            continue;
        }
        lines.next();
        let mut rows = Vec::new();
        while let Some(r) = lines.peek().and_then(|l| cells(l)) {
            rows.push(r);
            lines.next();
        }
        out.push(Table { header, rows });
    }
    out
}

/// The first table with every one of `columns`, and their indices in it.
pub fn find<'a>(tables: &'a [Table], columns: &[&str]) -> anyhow::Result<(&'a Table, Vec<usize>)> {
    for t in tables {
        let idx: Option<Vec<usize>> = columns.iter().map(|c| t.header.iter().position(|h| h == c)).collect();
        if let Some(idx) = idx {
            return Ok((t, idx));
        }
    }
    bail!("no table with the columns {columns:?} in the input")
}

/// A cell as a number: the first number in it ("3.87", "3.87 ms", "23×" all count); None for
/// "n/a" or an empty cell.
pub fn number(cell: &str) -> Option<f64> {
    let start = cell.find(|c: char| c.is_ascii_digit())?;
    let end = cell[start..].find(|c: char| !(c.is_ascii_digit() || c == '.')).map_or(cell.len(), |e| start + e);
    cell[start..end].parse().ok()
}

/// The lines of a line plot: (series name, points sorted by x), series in order of appearance.
pub fn lines(t: &Table, x: usize, y: usize, series: usize) -> Vec<(String, Vec<(f64, f64)>)> {
    let mut out: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for r in &t.rows {
        let (Some(xv), Some(yv)) = (r.get(x).and_then(|c| number(c)), r.get(y).and_then(|c| number(c))) else { continue };
        let name = r.get(series).cloned().unwrap_or_default();
        match out.iter_mut().find(|(n, _)| *n == name) {
            Some((_, pts)) => pts.push((xv, yv)),
            None => out.push((name, vec![(xv, yv)])),
        }
    }
    for (_, pts) in &mut out {
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    out
}

pub struct Style {
    pub title: String,
    pub x_desc: String,
    pub y_desc: String,
    pub log_x: bool,
    pub log_y: bool,
}

const W: u32 = 900;
const H: u32 = 520;

fn register_font() -> anyhow::Result<()> {
    const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
    let bytes = std::fs::read(FONT).with_context(|| format!("{FONT}: install fonts-dejavu-core (scripts/setup.sh does)"))?;
    // plotters keeps the font for the process's life.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).map_err(|_| anyhow::anyhow!("{FONT}: not a font plotters can read"))
}

fn range(values: impl Iterator<Item = f64>, log: bool) -> std::ops::Range<f64> {
    let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if log {
        (lo / 2.0).max(1e-3)..hi * 2.0
    } else {
        0.0..hi * 1.15
    }
}

/// Draws the lines into a PNG at `out`.
pub fn draw_lines(out: &Path, style: &Style, data: &[(String, Vec<(f64, f64)>)]) -> anyhow::Result<()> {
    if data.iter().all(|(_, p)| p.is_empty()) {
        bail!("nothing to plot: no row has numbers in both columns");
    }
    register_font()?;
    let root = BitMapBackend::new(out, (W, H)).into_drawing_area();
    root.fill(&WHITE)?;
    let xs = range(data.iter().flat_map(|(_, p)| p.iter().map(|p| p.0)), style.log_x);
    let ys = range(data.iter().flat_map(|(_, p)| p.iter().map(|p| p.1)), style.log_y);
    let mut chart = ChartBuilder::on(&root);
    chart.caption(&style.title, ("sans-serif", 22)).margin(16).x_label_area_size(44).y_label_area_size(64);
    // The four axis kinds are four chart types; one body draws each.
    macro_rules! body {
        ($c:expr) => {{
            let mut c = $c;
            c.configure_mesh().x_desc(style.x_desc.as_str()).y_desc(style.y_desc.as_str()).label_style(("sans-serif", 14)).draw()?;
            for (i, (name, pts)) in data.iter().enumerate() {
                let color = Palette99::pick(i).stroke_width(2);
                c.draw_series(LineSeries::new(pts.iter().copied(), color))?.label(name.as_str()).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
                c.draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
            }
            c.configure_series_labels().position(SeriesLabelPosition::UpperRight).label_font(("sans-serif", 14)).border_style(BLACK).background_style(WHITE.mix(0.9)).draw()?;
        }};
    }
    match (style.log_x, style.log_y) {
        (true, true) => body!(chart.build_cartesian_2d(xs.log_scale(), ys.log_scale())?),
        (true, false) => body!(chart.build_cartesian_2d(xs.log_scale(), ys)?),
        (false, true) => body!(chart.build_cartesian_2d(xs, ys.log_scale())?),
        (false, false) => body!(chart.build_cartesian_2d(xs, ys)?),
    }
    root.present()?;
    Ok(())
}

/// Grouped horizontal bars: one group per row, its label above its bars (one per value
/// column), each bar's value at its end.
pub fn draw_bars(out: &Path, style: &Style, labels: &[String], columns: &[String], values: &[Vec<Option<f64>>]) -> anyhow::Result<()> {
    let max = values.iter().flatten().flatten().fold(0.0f64, |m, v| m.max(*v));
    if max <= 0.0 {
        bail!("nothing to plot: no numbers in the value columns");
    }
    register_font()?;
    // Each group: a slot for its label, then one per bar; the first row at the top (the
    // legend goes beside its label, top right).
    let per = columns.len() + 1;
    let slots = (labels.len() * per) as f64;
    let h = (H as usize).max(100 + labels.len() * per * 24) as u32;
    let root = BitMapBackend::new(out, (W, h)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut c = ChartBuilder::on(&root).caption(&style.title, ("sans-serif", 22)).margin(16).x_label_area_size(44).y_label_area_size(8).build_cartesian_2d(0.0..max * 1.2, 0.0..slots)?;
    c.configure_mesh().disable_y_mesh().y_labels(0).x_desc(style.x_desc.as_str()).label_style(("sans-serif", 14)).draw()?;
    let top = |row: usize| slots - (row * per) as f64;
    let font = ("sans-serif", 14).into_font();
    c.draw_series(labels.iter().enumerate().map(|(row, l)| Text::new(l.clone(), (max * 0.005, top(row) - 0.2), font.clone())))?;
    for (k, name) in columns.iter().enumerate() {
        let color = Palette99::pick(k).filled();
        let bar = |row: usize, v: f64| {
            let y = top(row) - 1.0 - k as f64;
            (y, Rectangle::new([(0.0, y - 0.85), (v, y - 0.15)], color))
        };
        let rows = values.iter().enumerate().filter_map(|(row, vals)| Some((row, vals.get(k).copied().flatten()?)));
        c.draw_series(rows.clone().map(|(row, v)| bar(row, v).1))?.label(name.as_str()).legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], color));
        c.draw_series(rows.map(|(row, v)| Text::new(format!("{v}"), (v + max * 0.01, bar(row, v).0 - 0.2), font.clone())))?;
    }
    c.configure_series_labels().position(SeriesLabelPosition::UpperRight).label_font(("sans-serif", 14)).border_style(BLACK).background_style(WHITE.mix(0.9)).draw()?;
    root.present()?;
    Ok(())
}

pub struct Request {
    pub out: PathBuf,
    pub style: Style,
    /// Lines: the x column and the series column.
    pub x: Option<String>,
    pub series: Option<String>,
    /// Bars: the label column.
    pub label: Option<String>,
    pub y: Vec<String>,
}

/// Reads markdown on stdin and writes the PNG the request names.
pub fn run(req: Request, input: &str) -> anyhow::Result<()> {
    let all = tables(input);
    match (&req.x, &req.label) {
        (Some(x), None) => {
            let series = req.series.as_deref().context("--x needs --series (the column naming each line)")?;
            let [y] = req.y.as_slice() else { bail!("--x takes one --y column") };
            let (t, idx) = find(&all, &[x, y, series])?;
            draw_lines(&req.out, &req.style, &lines(t, idx[0], idx[1], idx[2]))
        }
        (None, Some(label)) => {
            let mut cols: Vec<&str> = vec![label];
            cols.extend(req.y.iter().map(String::as_str));
            let (t, idx) = find(&all, &cols)?;
            let labels: Vec<String> = t.rows.iter().map(|r| r.get(idx[0]).cloned().unwrap_or_default()).collect();
            let values: Vec<Vec<Option<f64>>> = t.rows.iter().map(|r| idx[1..].iter().map(|&i| r.get(i).and_then(|c| number(c))).collect()).collect();
            draw_bars(&req.out, &req.style, &labels, &req.y, &values)
        }
        _ => bail!("give either --x (lines) or --label (bars)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MD: &str = "## a\n\nsome text | not a table\n\n| system | N | setup (ms) |\n|---|---:|---:|\n| weft | 1 | 3.1 |\n| netavark | 100 | 150.2 |\n| weft | 100 | 3.4 |\n| cni | 100 | n/a |\n\n| path | Gbit/s |\n|---|---:|\n| direct | 40.5 |\n";

    #[test]
    fn tables_are_read_back_from_the_bench_markdown() {
        let t = tables(MD);
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].header, ["system", "N", "setup (ms)"]);
        assert_eq!(t[0].rows.len(), 4);
        assert_eq!(t[1].rows, [["direct", "40.5"]]);
        let (found, idx) = find(&t, &["path", "Gbit/s"]).expect("found");
        assert_eq!((found.rows.len(), idx), (1, vec![0, 1]));
        assert!(find(&t, &["nope"]).is_err());
    }

    #[test]
    fn lines_group_by_series_and_skip_cells_without_numbers() {
        let t = tables(MD);
        let l = lines(&t[0], 1, 2, 0);
        assert_eq!(l, [("weft".to_string(), vec![(1.0, 3.1), (100.0, 3.4)]), ("netavark".to_string(), vec![(100.0, 150.2)])]);
    }

    #[test]
    fn both_kinds_of_plot_are_drawn_as_png() {
        let dir = std::env::temp_dir().join(format!("weft-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let style = |log| Style { title: "t".into(), x_desc: "x".into(), y_desc: "y".into(), log_x: log, log_y: log };
        let lines_png = dir.join("l.png");
        draw_lines(&lines_png, &style(true), &lines(&tables(MD)[0], 1, 2, 0)).expect("lines");
        let bars_png = dir.join("b.png");
        run(Request { out: bars_png.clone(), style: style(false), x: None, series: None, label: Some("path".into()), y: vec!["Gbit/s".into()] }, MD).expect("bars");
        for png in [lines_png, bars_png] {
            let bytes = std::fs::read(&png).expect("read");
            assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{png:?} is a PNG");
            // IHDR: width and height, big-endian, after the 8-byte magic and the chunk's length and type.
            let w = u32::from_be_bytes(bytes[16..20].try_into().expect("w"));
            assert_eq!(w, W, "{png:?}");
        }
        let none = run(Request { out: dir.join("n.png"), style: style(false), x: Some("N".into()), series: Some("system".into()), label: None, y: vec!["nope".into()] }, MD);
        assert!(none.expect_err("no such column").to_string().contains("nope"));
        std::fs::remove_dir_all(&dir).expect("clean");
    }

    #[test]
    fn numbers_in_cells() {
        assert_eq!(number("3.87"), Some(3.87));
        assert_eq!(number("23×"), Some(23.0));
        assert_eq!(number("+150 ms"), Some(150.0));
        assert_eq!(number("n/a"), None);
        assert_eq!(number(""), None);
    }
}
