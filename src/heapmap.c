/*
 * The heap map: the region drawn as an SVG picture (shed_heap_map_svg,
 * SHED_MAP at exit).  One cell per pool, an arena a row, coloured by the
 * pool's state: in use (shaded by how full it is, the bins of
 * pools_by_fill), free and resident, being released, released, never
 * touched.  Beside it a legend with the count of each state and a summary
 * per class.  A region too big for the page is drawn at one cell per N pools
 * (N a power of two, stated in the picture), each cell in the most common
 * state of those of its pools that hold memory (see cell_state).  The cells are read by stats_pool_cells, with the
 * same relaxed reads as shed_stats; nothing is allocated but one byte per
 * pool, mapped for the call.
 */
#include <errno.h>

#include "shed_impl.h"

#define MAX_ROWS  128              /* rows drawn at the most */
#define CELL      8                /* pixels */
#define PITCH     9
#define GRID_X    80               /* room for the row labels */
#define GRID_Y    58               /* room for the title */

static const struct { const char *name, *colour, *label; } states[NCELLS] = {
    { "empty", "#c6dbef", "in use, no block live" },
    { "under10", "#9ecae1", "in use, under 10% full" },
    { "under50", "#6baed6", "in use, 10% to 50%" },
    { "under90", "#3182bd", "in use, 50% to 90%" },
    { "under100", "#08519c", "in use, 90% and more" },
    { "full", "#08306b", "in use, full" },
    { "dirty", "#fd8d3c", "free, resident (not yet released)" },
    { "releasing", "#fdd0a2", "free, being released" },
    { "released", "#bdbdbd", "released to the kernel" },
    { "untouched", "#f0f0f0", "never touched" },
};

/* Text with XML's three special characters escaped. */
static void out_xml(struct out *o, const char *s)
{
    char one[2] = { 0, 0 };
    for (; *s; s++) {
        one[0] = *s;
        out_str(o, *s == '<' ? "&lt;" : *s == '>' ? "&gt;" : *s == '&' ? "&amp;" : one);
    }
}

static void text_at(struct out *o, uint64_t x, uint64_t y, const char *anchor, const char *s)
{
    out_fmt(o, "<text x=\"%u\" y=\"%u\"", x, y);
    if (anchor)
        out_fmt(o, " text-anchor=\"%s\"", anchor);
    out_str(o, ">");
    out_xml(o, s);
    out_str(o, "</text>\n");
}

static void rect(struct out *o, uint64_t x, uint64_t y, uint64_t w, uint64_t h, const char *cls)
{
    out_fmt(o, "<rect x=\"%u\" y=\"%u\" width=\"%u\" height=\"%u\" class=\"%s\"/>\n", x, y, w,
            h, cls);
}

/* The state a cell of n pools is drawn in: the most common among those
 * of its pools that hold memory (in use, or free and resident), so that a
 * pool that pins a page shows at any scale; else the most common of
 * released and never touched.  The first of equals. */
static unsigned cell_state(const unsigned char *cell, size_t n)
{
    size_t count[NCELLS] = { 0 };
    unsigned best = 0;
    for (size_t i = 0; i < n; i++)
        count[cell[i]]++;
    for (unsigned s = 1; s < NCELLS; s++)
        best = count[s] > count[best] ? s : best;
    if (best >= CELL_RELEASED)
        for (unsigned s = 0; s < CELL_RELEASED; s++)
            if (count[s] && (best >= CELL_RELEASED || count[s] > count[best]))
                best = s;
    return best;
}

/* The grid: rows of 64 cells, each cell per pools; labels at the left. */
static void draw_grid(struct out *o, const unsigned char *cell, size_t npools, size_t per)
{
    size_t span = (size_t)POOLS_PER_ARENA * per, rows = (npools + span - 1) / span;
    size_t label_every = rows <= 32 ? 1 : 8;
    out_str(o, "<g id=\"labels\" font-size=\"10\" text-anchor=\"end\">\n");
    for (size_t r = 0; r < rows; r += label_every)
        out_fmt(o, "<text x=\"%u\" y=\"%u\">arena %n</text>\n", (uint64_t)GRID_X - 6,
                (uint64_t)(GRID_Y + r * PITCH + CELL), (uint64_t)(r * per));
    out_str(o, "</g>\n<g id=\"pools\">\n");
    for (size_t i = 0, k = 0; i < npools; i += per, k++) {
        size_t n = npools - i < per ? npools - i : per;
        rect(o, GRID_X + k % POOLS_PER_ARENA * PITCH, GRID_Y + k / POOLS_PER_ARENA * PITCH, CELL,
             CELL, states[cell_state(cell + i, n)].name);
    }
    out_str(o, "</g>\n");
}

/* The legend: a swatch, the state, and its number of pools. */
static uint64_t draw_legend(struct out *o, const size_t *count, uint64_t x, uint64_t y)
{
    char a[32];
    out_str(o, "<g id=\"legend\">\n");
    text_at(o, x, y, NULL, "pools by state");
    for (unsigned s = 0; s < NCELLS; s++) {
        y += 16;
        rect(o, x, y - 9, 10, 10, states[s].name);
        text_at(o, x + 16, y, NULL, states[s].label);
        text_at(o, x + 330, y, "end", fmt_count(a, count[s]));
    }
    out_str(o, "</g>\n");
    return y;
}

/* Per class: size, blocks, live bytes, pools, fill, and a bar of its
 * pools by fill. */
static uint64_t draw_classes(struct out *o, const struct shed_stats *st, uint64_t x, uint64_t y)
{
    static const char *const head[] = { "size", "blocks", "live", "pools" };
    static const unsigned col[] = { 30, 100, 165, 220 };
    char a[32];
    out_str(o, "<g id=\"classes\" font-family=\"monospace\" font-size=\"11\">\n");
    for (unsigned i = 0; i < 4; i++)
        text_at(o, x + col[i], y, "end", head[i]);
    text_at(o, x + 232, y, NULL, "pools by fill");
    for (unsigned c = 0; c < NCLS; c++) {
        const struct shed_class_stats *cs = &st->classes[c];
        const size_t *bins = st->fill[c].pools_by_fill;
        size_t total = 0;
        for (unsigned b = 0; b < SHED_FILL_BINS; b++)
            total += bins[b];
        if (!cs->blocks_in_use && !cs->pools_in_use)
            continue;
        y += 14;
        text_at(o, x + col[0], y, "end", fmt_count(a, cs->block_size));
        text_at(o, x + col[1], y, "end", fmt_count(a, cs->blocks_in_use));
        text_at(o, x + col[2], y, "end", fmt_bytes(a, cs->bytes_in_use));
        text_at(o, x + col[3], y, "end", fmt_count(a, cs->pools_in_use));
        for (unsigned b = 0, done = 0; b < SHED_FILL_BINS && total; b++) {
            unsigned w = (unsigned)((done + bins[b]) * 100 / total) - (unsigned)(done * 100 / total);
            if (w)
                rect(o, x + 232 + done * 100 / total, y - 9, w, 10, states[b].name);
            done += (unsigned)bins[b];
        }
    }
    out_str(o, "</g>\n");
    return y;
}

static void draw(struct out *o, const unsigned char *cell, size_t npools,
                 const struct shed_stats *st)
{
    size_t per = 1, count[NCELLS] = { 0 };
    while ((npools + POOLS_PER_ARENA * per - 1) / (POOLS_PER_ARENA * per) > MAX_ROWS)
        per *= 2;
    for (size_t i = 0; i < npools; i++)
        count[cell[i]]++;
    size_t rows = (npools + POOLS_PER_ARENA * per - 1) / (POOLS_PER_ARENA * per);
    uint64_t panel_x = GRID_X + POOLS_PER_ARENA * PITCH + 30;
    uint64_t width = panel_x + 350, height = GRID_Y + (rows ? rows : 1) * PITCH;
    uint64_t panel_h = GRID_Y + 16 * (NCELLS + 2) + 14 * (NCLS + 1);
    height = (height > panel_h ? height : panel_h) + 20;

    out_fmt(o, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%u\" "
               "height=\"%u\" font-family=\"sans-serif\" font-size=\"12\">\n<style>\n",
            width, height);
    for (unsigned s = 0; s < NCELLS; s++)
        out_fmt(o, ".%s{fill:%s}\n", states[s].name, states[s].colour);
    out_str(o, "</style>\n<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n");

    /* title: the headline, then the scale */
    char line[160];
    struct out t = { line, 0, sizeof line - 1, NULL, -1, false };
    report_headline(&t, st);
    line[t.len] = 0;
    out_str(o, "<g id=\"title\">\n");
    out_str(o, "<text x=\"10\" y=\"20\" font-size=\"14\" font-weight=\"bold\">shed heap map: ");
    out_xml(o, line);
    out_str(o, "</text>\n<text x=\"10\" y=\"40\">");
    if (per == 1)
        out_fmt(o, "one cell per pool of %b; a row is an arena of 64 pools; ", st->pool_size);
    else
        out_fmt(o, "scale: one cell per %n pools (%b), in the most common state of those "
                   "that hold memory; a row is %n arenas; ", (uint64_t)per, per * st->pool_size, (uint64_t)per);
    out_fmt(o, "%n arenas carved of %n</text>\n</g>\n", (uint64_t)(npools / POOLS_PER_ARENA),
            st->bytes_reserved / st->pool_size / POOLS_PER_ARENA);

    draw_grid(o, cell, npools, per);
    uint64_t y = draw_legend(o, count, panel_x, GRID_Y + 8);
    draw_classes(o, st, panel_x, y + 30);
    out_str(o, "</svg>\n");
}

void heapmap_svg(struct out *o)
{
    struct shed_stats st;
    shed_stats_get(&st, sizeof st);
    if (!st.bytes_reserved) {
        st.pool_size = g.page_size ? g.page_size : 4096;   /* no region: an empty map */
        st.bytes_reserved = st.pool_size * POOLS_PER_ARENA;
    }
    /* The cells after the stats: arenas carved meanwhile are left out. */
    size_t npools = st.arenas * POOLS_PER_ARENA;
    unsigned char *cell = npools ? os_map(npools) : NULL;
    if (npools && !cell) {
        o->failed = true;
        errno = ENOMEM;
        return;
    }
    if (npools)
        stats_pool_cells(cell, npools);
    draw(o, cell, npools, &st);
    if (cell)
        os_unmap(cell, npools);
}

EXPORT int shed_heap_map_svg(FILE *out)
{
    char buf[4096];
    struct out o = { buf, 0, sizeof buf, out, -1, false };
    if (!out) {
        errno = EINVAL;
        return -1;
    }
    heapmap_svg(&o);
    out_flush(&o);
    return o.failed ? -1 : 0;
}
