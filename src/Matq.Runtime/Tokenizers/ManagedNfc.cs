// Unicode NFC (UAX #15: canonical decomposition, canonical ordering, canonical composition) in managed code, from
// NfcTables: the characters of Unicode 9.0, the data HF tokenizers 0.23 normalizes with (later marks are starters to
// it, so they are here too; ids match HF's). Same result on every machine: no ICU, works under InvariantGlobalization.
//
// Why not string.Normalize: this repo builds with InvariantGlobalization=true, where .NET has no normalization
// data (.NET 10 returns "e\u0301" unchanged, silently not NFC; other versions throw PlatformNotSupportedException),
// and a library cannot choose its host's setting: an app that references matq with invariant mode on, or runs where
// libicu is absent (slim containers, Debian without libicu72), would get ids that differ from HF. Turning invariant
// mode off here would only move the failure to those hosts.
// Tables are ~2k decompositions + ~330 class runs; tests compare the result with ICU (.NET with ICU, in another
// process) and with HF's own NFC normalizer (Node) over every character the tables name and random strings.
namespace Matq.Runtime.Tokenizers;

internal static class ManagedNfc
{
    private const int SBase = 0xAC00, LBase = 0x1100, VBase = 0x1161, TBase = 0x11A7;
    private const int LCount = 19, VCount = 21, TCount = 28, NCount = VCount * TCount, SCount = LCount * NCount;

    private static readonly Data D = new();

    /// <summary>The NFC form of <paramref name="text"/>; returns the same instance when it is already NFC.</summary>
    public static string Normalize(string text)
    {
        int first = FirstUnsafe(text, 0);
        if (first < 0) return text;
        var sb = new System.Text.StringBuilder(text.Length);
        var buffer = new List<int>();
        int copied = 0;
        while (first >= 0)
        {
            // A chunk runs from the last safe char before the first unsafe one (it may be the starter that a mark
            // composes with) to the next safe char after it, which can never combine with what precedes it.
            int start = first;
            while (start > copied)
            {
                start = PreviousCodePointStart(text, start);
                if (IsSafeAt(text, start, out _)) break;
            }
            int end = first;
            while (end < text.Length)
            {
                bool safe = IsSafeAt(text, end, out int width);
                if (safe && end > first) break;
                end += width;
            }
            sb.Append(text, copied, start - copied);
            NormalizeChunk(text, start, end, buffer, sb);
            copied = end;
            first = FirstUnsafe(text, end);
        }
        sb.Append(text, copied, text.Length - copied);
        string result = sb.ToString();
        return result == text ? text : result;
    }

    private static int PreviousCodePointStart(string text, int i) =>
        i >= 2 && char.IsLowSurrogate(text[i - 1]) && char.IsHighSurrogate(text[i - 2]) ? i - 2 : i - 1;

    private static int FirstUnsafe(string text, int from)
    {
        for (int i = from; i < text.Length;)
        {
            if (text[i] < 0x300) { i++; continue; }   // Latin-1 and below: ccc 0, never decomposed or a second
            if (!IsSafeAt(text, i, out int width)) return i;
            i += width;
        }
        return -1;
    }

    // Safe (NFC_Quick_Check=Yes and ccc=0): NFC leaves the char as it is and nothing after it reaches back past it.
    private static bool IsSafeAt(string text, int i, out int width)
    {
        int cp = text[i];
        width = 1;
        if (char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
        {
            cp = char.ConvertToUtf32(text[i], text[i + 1]);
            width = 2;
        }
        return !D.Unsafe(cp);
    }

    private static void NormalizeChunk(string text, int start, int end, List<int> cps, System.Text.StringBuilder into)
    {
        cps.Clear();
        for (int i = start; i < end;)
        {
            int cp = text[i];
            if (char.IsHighSurrogate(text[i]) && i + 1 < end && char.IsLowSurrogate(text[i + 1])) cp = char.ConvertToUtf32(text[i], text[++i]);
            i++;
            Decompose(cp, cps);
        }
        // Canonical ordering: a stable sort by class of each run of non-starters (insertion sort: runs are short).
        for (int i = 1; i < cps.Count; i++)
        {
            int cc = D.Ccc(cps[i]);
            if (cc == 0) continue;
            int j = i;
            while (j > 0 && D.Ccc(cps[j - 1]) > cc) { (cps[j - 1], cps[j]) = (cps[j], cps[j - 1]); j--; }
        }
        // Canonical composition: C joins the last starter S unless a char between them has class 0 or ≥ class(C).
        int starter = -1, lastCc = -1, count = 0;   // lastCc -1: nothing between S and C
        for (int i = 0; i < cps.Count; i++)
        {
            int c = cps[i], cc = D.Ccc(c);
            if (starter >= 0 && (lastCc == -1 || (lastCc != 0 && lastCc < cc)) && TryCompose(cps[starter], c, out int composed))
            {
                cps[starter] = composed;
                continue;
            }
            if (cc == 0) { starter = count; lastCc = -1; }
            else lastCc = cc;
            cps[count++] = c;
        }
        for (int i = 0; i < count; i++)
        {
            if (cps[i] < 0x10000) into.Append((char)cps[i]);
            else into.Append(char.ConvertFromUtf32(cps[i]));
        }
    }

    private static void Decompose(int cp, List<int> into)
    {
        if (cp is >= SBase and < SBase + SCount)
        {
            int s = cp - SBase;
            into.Add(LBase + s / NCount);
            into.Add(VBase + s % NCount / TCount);
            if (s % TCount != 0) into.Add(TBase + s % TCount);
            return;
        }
        if (D.Decomposition.TryGetValue(cp, out var d))
        {
            Decompose(d.First, into);
            if (d.Second != 0) into.Add(d.Second);   // the second part of a canonical pair never decomposes further
            return;
        }
        into.Add(cp);
    }

    private static bool TryCompose(int a, int b, out int composed)
    {
        if (a is >= LBase and < LBase + LCount && b is >= VBase and < VBase + VCount)
        {
            composed = SBase + ((a - LBase) * VCount + (b - VBase)) * TCount;
            return true;
        }
        if (a is >= SBase and < SBase + SCount && (a - SBase) % TCount == 0 && b is > TBase and < TBase + TCount)
        {
            composed = a + (b - TBase);
            return true;
        }
        return D.Composition.TryGetValue(((long)a << 21) | (uint)b, out composed);
    }

    private sealed class Data
    {
        public readonly Dictionary<int, (int First, int Second)> Decomposition = [];
        public readonly Dictionary<long, int> Composition = [];
        private readonly Dictionary<int, int> astralCcc = [];
        private readonly byte[] bmpCcc = new byte[0x10000];
        private readonly bool[] bmpUnsafe = new bool[0x10000];
        private readonly HashSet<int> astralUnsafe = [];

        public Data()
        {
            var runs = NfcTables.CombiningClassRuns;
            for (int i = 0; i < runs.Length; i += 3)
                for (int cp = runs[i]; cp <= runs[i + 1]; cp++)
                {
                    if (cp < 0x10000) bmpCcc[cp] = (byte)runs[i + 2]; else astralCcc[cp] = runs[i + 2];
                    MarkUnsafe(cp);
                }
            var excluded = new HashSet<int>(NfcTables.CompositionExclusions.ToArray());
            var dec = NfcTables.Decompositions;
            for (int i = 0; i < dec.Length; i += 3)
            {
                int cp = dec[i], a = dec[i + 1], b = dec[i + 2];
                Decomposition[cp] = (a, b);
                if (b != 0 && !excluded.Contains(cp))
                {
                    Composition[((long)a << 21) | (uint)b] = cp;
                    MarkUnsafe(b);               // a possible second of a pair (NFC_QC=Maybe)
                }
                else MarkUnsafe(cp);             // singletons and exclusions never survive NFC (NFC_QC=No)
            }
            for (int cp = VBase; cp < VBase + VCount; cp++) MarkUnsafe(cp);
            for (int cp = TBase + 1; cp < TBase + TCount; cp++) MarkUnsafe(cp);
        }

        private void MarkUnsafe(int cp)
        {
            if (cp < 0x10000) bmpUnsafe[cp] = true; else astralUnsafe.Add(cp);
        }

        public bool Unsafe(int cp) => cp < 0x10000 ? bmpUnsafe[cp] : astralUnsafe.Contains(cp);

        public int Ccc(int cp) => cp < 0x10000 ? bmpCcc[cp] : astralCcc.TryGetValue(cp, out int c) ? c : 0;
    }
}
