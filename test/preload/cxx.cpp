// C++ under the preload: operator new/delete (which reach malloc/free in
// libstdc++), new[]/delete[], aligned new, and the std containers.  Builds
// a word index, then checks it against what was put in.  Prints results that
// depend only on the input, so the output with and without
// LD_PRELOAD=libshed.so must be identical.
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <new>
#include <string>
#include <unordered_map>
#include <vector>

struct Node {
    std::string name;
    std::vector<uint32_t> refs;
    std::unique_ptr<Node> left, right;
    explicit Node(std::string n) : name(std::move(n)) {}
};

struct alignas(64) Line {
    unsigned char bytes[200];
};

static uint32_t next_rand(uint32_t &x)
{
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return x;
}

static std::string word(uint32_t n)
{
    std::string s;
    do {
        s += char('a' + n % 26);
        n /= 26;
    } while (n);
    return s;
}

// An unbalanced binary tree of unique_ptrs: many small new/delete.
static void insert(std::unique_ptr<Node> &root, const std::string &w, uint32_t ref)
{
    std::unique_ptr<Node> *at = &root;
    while (*at && (*at)->name != w)
        at = w < (*at)->name ? &(*at)->left : &(*at)->right;
    if (!*at)
        *at = std::make_unique<Node>(w);
    (*at)->refs.push_back(ref);
}

static const Node *find(const std::unique_ptr<Node> &root, const std::string &w)
{
    const Node *n = root.get();
    while (n && n->name != w)
        n = w < n->name ? n->left.get() : n->right.get();
    return n;
}

int main()
{
    const uint32_t N = 300000;
    uint32_t x = 2463534242u;
    std::map<std::string, std::vector<uint32_t>> index;
    std::unordered_map<uint32_t, std::string> by_ref;
    std::unique_ptr<Node> tree;
    uint64_t failures = 0;

    for (uint32_t i = 0; i < N; i++) {
        std::string w = word(next_rand(x) % 20000);
        index[w].push_back(i);
        by_ref.emplace(i, w);
        insert(tree, w, i);
    }
    // Every reference is found in the right place in all three structures.
    for (uint32_t i = 0; i < N; i += 7) {
        const std::string &w = by_ref.at(i);
        const Node *n = find(tree, w);
        const std::vector<uint32_t> &v = index.at(w);
        if (!n || n->refs != v)
            failures++;
    }
    // Drop every other word, then recount what is left.
    size_t k = 0;
    for (auto it = index.begin(); it != index.end(); k++)
        it = k % 2 ? index.erase(it) : std::next(it);
    uint64_t sum = 0;
    for (const auto &kv : index)
        for (uint32_t r : kv.second)
            sum += r ^ kv.first.size();

    // Arrays and over-aligned objects: new[] / delete[] and aligned new.
    for (int round = 0; round < 2000; round++) {
        auto *ints = new uint64_t[1 + round % 97];
        auto *lines = new Line[1 + round % 5];
        for (int i = 0; i < 1 + round % 97; i++)
            ints[i] = uint64_t(round) * i;
        for (int i = 0; i < 1 + round % 5; i++) {
            if (reinterpret_cast<uintptr_t>(&lines[i]) % alignof(Line))
                failures++;
            lines[i].bytes[199] = (unsigned char)i;
        }
        sum += ints[round % 97 / 2] + lines[round % 5].bytes[199];
        delete[] ints;
        delete[] lines;
    }
    tree.reset();
    std::printf("%zu words kept, sum %llu, %llu failures\n", index.size(),
                (unsigned long long)sum, (unsigned long long)failures);
    return failures != 0;
}
