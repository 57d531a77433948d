using System.Text;

namespace Crm.Contacts.Features.Imports;

/// <summary>
/// A streaming RFC 4180 reader over UTF-8 bytes: one record at a time from a 64 KiB buffer, so a
/// 1 GB file never sits in memory. Quoted fields may hold delimiters, doubled quotes and line
/// breaks; LF and CRLF both end a record. <see cref="Line"/> is the physical line a record starts
/// on (1-based), which is what an import error reports.
/// </summary>
public sealed class CsvReader(Stream stream, byte delimiter = (byte)',')
{
    private const int MaxFieldBytes = 1 << 20;
    private readonly byte[] _buffer = new byte[1 << 16];
    private byte[] _field = new byte[256];
    private int _fieldLength;
    private int _pos;
    private int _len;
    private bool _eof;
    private bool _started;
    private long _nextLine = 1;

    public List<string> Fields { get; } = [];

    /// <summary>The line the current record started on.</summary>
    public long Line { get; private set; }

    /// <summary>Set when the current record is malformed (its fields are then incomplete).</summary>
    public string? Error { get; private set; }

    public async ValueTask<bool> ReadAsync(CancellationToken ct)
    {
        Fields.Clear();
        Error = null;
        if (!_started)
        {
            _started = true;
            await FillAsync(ct);
            // Skip a UTF-8 byte order mark.
            if (_len - _pos >= 3 && _buffer[_pos] == 0xEF && _buffer[_pos + 1] == 0xBB && _buffer[_pos + 2] == 0xBF) _pos += 3;
        }
        if (_pos >= _len && !await FillAsync(ct)) return false;

        Line = _nextLine;
        _fieldLength = 0;
        var quoted = false;
        var inQuotes = false;
        var fieldStart = true;
        while (true)
        {
            if (_pos >= _len && !await FillAsync(ct))
            {
                if (inQuotes) Error = "a quoted field is not closed before the end of the file";
                EndField(quoted);
                return true;
            }
            var b = _buffer[_pos++];
            if (inQuotes)
            {
                if (b == (byte)'"')
                {
                    if (_pos >= _len) await FillAsync(ct);
                    if (_pos < _len && _buffer[_pos] == (byte)'"')
                    {
                        _pos++;
                        Append(b);
                    }
                    else
                    {
                        inQuotes = false;
                    }
                }
                else
                {
                    if (b == (byte)'\n') _nextLine++;
                    Append(b);
                }
                continue;
            }
            if (b == delimiter)
            {
                EndField(quoted);
                quoted = false;
                fieldStart = true;
                continue;
            }
            if (b == (byte)'\n')
            {
                _nextLine++;
                EndField(quoted);
                return true;
            }
            if (b == (byte)'\r')
            {
                if (_pos >= _len) await FillAsync(ct);
                if (_pos < _len && _buffer[_pos] == (byte)'\n') continue;
            }
            if (b == (byte)'"' && fieldStart)
            {
                quoted = inQuotes = true;
                fieldStart = false;
                continue;
            }
            fieldStart = false;
            Append(b);
        }
    }

    private void Append(byte b)
    {
        if (_fieldLength == _field.Length)
        {
            if (_field.Length >= MaxFieldBytes)
            {
                Error ??= $"a field is longer than {MaxFieldBytes} bytes";
                return;
            }
            Array.Resize(ref _field, _field.Length * 2);
        }
        _field[_fieldLength++] = b;
    }

    private void EndField(bool quoted)
    {
        // Unquoted fields are trimmed of the spaces spreadsheets pad with; quoted ones are kept as written.
        var span = _field.AsSpan(0, _fieldLength);
        if (!quoted) span = span.Trim((byte)' ');
        Fields.Add(span.Length == 0 ? "" : Encoding.UTF8.GetString(span));
        _fieldLength = 0;
    }

    private async ValueTask<bool> FillAsync(CancellationToken ct)
    {
        if (_pos < _len) return true;
        if (_eof) return false;
        _pos = 0;
        _len = await stream.ReadAsync(_buffer, ct);
        if (_len == 0) _eof = true;
        return _len > 0;
    }
}
