// Extracts a .tgz (gzip + ustar/pax, as npm writes) into a folder, in-process: no external tar.
// Only regular files and folders are written, and no entry may land outside the destination.
using System.Formats.Tar;
using System.IO.Compression;

namespace Matq.Data;

public static class TarGz
{
    /// <summary>Extracts <paramref name="archive"/> into <paramref name="destination"/>; a damaged archive or an
    /// entry escaping the folder throws MatqException naming the archive. Returns the number of files written.</summary>
    public static int Extract(string archive, string destination)
    {
        var root = Path.GetFullPath(destination);
        Directory.CreateDirectory(root);
        var rootPrefix = root.EndsWith(Path.DirectorySeparatorChar) ? root : root + Path.DirectorySeparatorChar;
        int files = 0;
        try
        {
            using var file = File.OpenRead(archive);
            using var gz = new GZipStream(file, CompressionMode.Decompress);
            using var tar = new TarReader(gz);
            while (tar.GetNextEntry() is { } entry)
            {
                var target = Path.GetFullPath(Path.Combine(root, entry.Name));
                if (!target.StartsWith(rootPrefix, StringComparison.Ordinal) && target != root)
                    throw new MatqException($"archive {archive} has an entry outside its folder ({entry.Name}): it is not a safe npm tarball, delete it");
                switch (entry.EntryType)
                {
                    case TarEntryType.Directory:
                        Directory.CreateDirectory(target);
                        break;
                    case TarEntryType.RegularFile or TarEntryType.V7RegularFile or TarEntryType.ContiguousFile:
                        Directory.CreateDirectory(Path.GetDirectoryName(target)!);
                        using (var output = File.Create(target))
                            entry.DataStream?.CopyTo(output);
                        files++;
                        break;
                    default:
                        break; // links and devices carry no dataset content, and links could point anywhere
                }
            }
        }
        catch (Exception e) when (e is InvalidDataException or EndOfStreamException or FormatException)
        {
            throw new MatqException($"archive {archive} is damaged ({e.Message}): delete it and fetch again", e);
        }
        if (files == 0)
            throw new MatqException($"archive {archive} holds no files: delete it and fetch again");
        return files;
    }
}
